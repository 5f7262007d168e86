"""The README's main job: pretrained weights first, the sweeps of its size, then the artefacts and a timing
record with peak memory."""
import json
import re

import pytest
import yaml

from reprokit import main
from reprokit.viz import registry
from tests.test_sweep import ROOT, write_sweep


@pytest.mark.slow
def test_main_job_trains_builds_artefacts_and_records_timing(tmp_path, digits_root, monkeypatch):
    sweep = write_sweep(tmp_path, digits_root, [{"seeds": [0], "name": "digits-table4-ls"}])
    cfg = yaml.safe_load((tmp_path / "tiny.yaml").read_text())
    built = []
    monkeypatch.setattr(main, "pretrain_weights", lambda config, threads: built.append((config, threads)))
    monkeypatch.setitem(main.SIZES, "tiny", main.MainJob((str(sweep),), str(tmp_path / "tiny.yaml"), ("summary",)))
    monkeypatch.chdir(ROOT)  # the artefact notebooks are found relative to the repository
    timing = main.run_main_job("tiny", tmp_path / "figures", jobs=1, data_root=cfg["data"]["root"])
    assert built == [(str(tmp_path / "tiny.yaml"), 1)]
    assert timing["failed"] == [] and timing["cells_run"] == 1 and timing["peak_rss_mib"] > 50
    recorded = json.loads((tmp_path / "figures" / "main_tiny.timing.json").read_text())
    assert recorded["pretrain_seconds"] >= 0 and list(recorded["cells"]) == ["digits-table4-ls-s0"]
    cell = recorded["cells"]["digits-table4-ls-s0"]
    assert cell["seconds"] > 0 and 0 < cell["sec_per_step"] < cell["seconds"]
    assert "| supervised |" in (tmp_path / "figures" / "summary.md").read_text()


def test_pretrain_weights_is_a_no_op_without_glyphs(tmp_path, digits_root, monkeypatch):
    from tests.conftest import tiny_raw

    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tiny_raw(digits_root)))
    monkeypatch.setattr("reprokit.models.pretrain.ensure_pretrained", lambda *a, **k: pytest.fail("built weights"))
    main.pretrain_weights(str(tmp_path / "c.yaml"), 2)


def test_sizes_rebuild_known_artefacts_and_a_misspelt_one_is_refused():
    assert main.SIZES["full"].artefacts == registry.NAMES
    with pytest.raises(ValueError, match="unknown artefact fig77; artefacts are summary, "):
        main.MainJob(("s.yaml",), "c.yaml", ("fig77",))


def test_makefile_main_target_parses_as_the_main_job_command():
    """``make main`` names the size explicitly; the data-set ``--preset`` of ``reprokit figures`` is no option here."""
    recipe = re.search(r"^main:.*\n(?:\t.*\n)*?\t\$\(PY\) -m reprokit\.main (.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert main.build_parser().parse_args(recipe.group(1).split()).size == "quick"
    with pytest.raises(SystemExit):
        main.build_parser().parse_args(["--preset", "quick"])


def test_readme_quick_table_quotes_the_archived_main_job_records():
    """The README's quick column is copied by hand from the main job's records (docs/runs/quick): each number
    must equal its run's mIoU, and every cell of the quick sweep must have its row, so a rebuilt main job with
    other numbers or cells fails here until the README follows."""
    from reprokit.sweep import expand

    rows = {"supervised, 1/8 labels": "digits-table4-ls", "Mean Teacher": "digits-table4-mt",
            "FixMatch": "digits-fixmatch-1_8", "STPG": "digits-table4-stpg"}
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| mIoU (%) | quick (2000 steps, seed 0)"):]
    quoted = {}
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        label, quick = [c.strip() for c in line.strip("|").split("|")][:2]
        if re.fullmatch(r"\d+\.\d\d", quick):
            quoted[label] = float(quick)
    _, cells = expand(ROOT / "params/sweeps/quick.yaml")
    assert sorted(rows[label] + "-s0" for label in quoted) == sorted(c.cell_id for c in cells)
    for label, value in quoted.items():
        record = json.loads((ROOT / "docs/runs/quick" / f"{rows[label]}-s0" / "eval.json").read_text())
        assert value == round(100 * record["miou"], 2), label
