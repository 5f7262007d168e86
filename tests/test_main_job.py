"""The README's main job: pretrained weights first, the preset's sweeps, then the artefacts and a timing
record with peak memory."""
import json

import pytest
import yaml

from reprokit import main
from tests.test_sweep import ROOT, write_sweep


@pytest.mark.slow
def test_main_job_trains_builds_artefacts_and_records_timing(tmp_path, digits_root, monkeypatch):
    sweep = write_sweep(tmp_path, digits_root, [{"seeds": [0], "name": "digits-table4-ls"}])
    cfg = yaml.safe_load((tmp_path / "tiny.yaml").read_text())
    built = []
    monkeypatch.setattr(main, "pretrain_weights", lambda config, threads: built.append((config, threads)))
    monkeypatch.setitem(main.PRESETS, "tiny", {"sweeps": [str(sweep)], "pretrain": str(tmp_path / "tiny.yaml"),
                                               "artefacts": ["summary"]})
    monkeypatch.chdir(ROOT)  # the artefact notebooks are found relative to the repository
    timing = main.run_preset("tiny", tmp_path / "figures", jobs=1, data_root=cfg["data"]["root"])
    assert built == [(str(tmp_path / "tiny.yaml"), 1)]
    assert timing["failed"] == [] and timing["cells_run"] == 1 and timing["peak_rss_mib"] > 50
    assert json.loads((tmp_path / "figures" / "main_tiny.timing.json").read_text())["pretrain_seconds"] >= 0
    assert "| supervised |" in (tmp_path / "figures" / "summary.md").read_text()


def test_pretrain_weights_is_a_no_op_without_glyphs(tmp_path, digits_root, monkeypatch):
    from tests.conftest import tiny_raw

    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tiny_raw(digits_root)))
    monkeypatch.setattr("reprokit.models.pretrain.ensure_pretrained", lambda *a, **k: pytest.fail("built weights"))
    main.pretrain_weights(str(tmp_path / "c.yaml"), 2)
