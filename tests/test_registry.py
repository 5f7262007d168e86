"""The artefact registry is the one place an artefact is declared: its runs per preset, its notebook and
parameters, and what ``reprokit figures`` does with unknown or runless artefacts. No kernel starts here."""
import json
from pathlib import Path

import papermill as pm
import pytest

from reprokit import cli
from reprokit.figures import regenerate
from reprokit.viz import registry, tables
from reprokit.viz.presets import PRESETS
from tests.test_notebooks import ROOT


def test_select_keeps_the_order_asked_and_refuses_unknown_names():
    assert [a.name for a in registry.select(["fig7", "summary"])] == ["fig7", "summary"]
    assert [a.name for a in registry.select()] == list(registry.NAMES)
    with pytest.raises(ValueError, match="unknown artefact fig77; artefacts are summary, tables_1_3, "):
        registry.select(["fig7", "fig77"])


def test_runs_per_preset_follow_the_data_set_and_reuse_table4_runs():
    table5 = registry.select(["table5"])[0].needs("voc")
    assert table5 == ["voc-table5-cons", "voc-table5-cons_lmis", "voc-table4-stpg", "voc-table4-dm_dcl"]
    assert registry.select(["fig8"])[0].needs("cityscapes") == ["cityscapes-fig8-bank", "cityscapes-fig8-lambda",
                                                                "cityscapes-table4-stpg"]
    assert registry.select(["tables_1_3"])[0].needs("digits") == []  # finds its STPG runs by protocol
    assert "digits-oracle" in registry.select(["summary"])[0].needs("digits")
    with pytest.raises(ValueError, match="unknown figures preset 'kitti'; presets are digits, cityscapes, voc"):
        registry.select(["fig6"])[0].needs("kitti")


@pytest.mark.parametrize("artefact", registry.ARTEFACTS, ids=lambda a: a.name)
def test_each_artefact_notebook_offers_the_registry_parameters(artefact):
    params = pm.inspect_notebook(str(ROOT / "notebooks" / artefact.notebook))
    assert list(params) == [p.name for p in artefact.notebook_params]
    written = {p.name: json.dumps(p.default) if isinstance(p.default, str) else repr(p.default)
               for p in artefact.params}  # as Param.line writes them
    assert {p.name: params[p.name]["default"] for p in artefact.params} == written
    # the defaults a newcomer runs: the committed records, or the demo runs where checkpoints are needed,
    # written to the untracked outputs folder
    runs = "runs/demo" if artefact.loads_networks else "docs/runs/benchmark"
    assert (params["runs"]["default"], params["out"]["default"]) == (f'"{runs}"', '"outputs"')


def test_builders_refuse_parameters_they_do_not_have(tmp_path):
    with pytest.raises(ValueError, match="fig6 has no parameter per_class"):
        registry.build("fig6", tmp_path / "runs", tmp_path / "out", per_class=3)


def test_paper_columns_come_from_the_csv(tmp_path):
    """Table 4 on VOC shows the paper's VOC rows; its Table 5 and Fig. 8b exist for Cityscapes only."""
    assert tables.paper_curve("lambda_u") == {0.0: 66.74, 0.5: 72.5, 1.0: 75.14, 1.5: 73.94}
    assert tables.paper_curve("bank_size") == {}
    t4 = registry.build("table4", tmp_path / "none", tmp_path / "out", "voc").table
    t5 = registry.build("table5", tmp_path / "none", tmp_path / "out", "voc").table
    assert list(t4["paper"])[:2] == ["66.83", "72.63"] and list(t5["paper"]) == ["71.43", "72.61", "75.14", "73.56"]
    assert "the paper's voc-blended numbers" in (tmp_path / "out" / "table4.md").read_text()
    assert list(t4["Row"]) == list(PRESETS["voc"].table4)


def test_new_methods_join_the_comparison_and_have_ablation_tables_without_paper_columns(tmp_path):
    """CW-BASS and FARCLUSS come into the summary, Fig. 6 and Fig. 9 through their registry entries; their
    component ablations, and CoSA's, are tables of their own, full method first, with no paper columns."""
    for name in ("summary", "fig6", "fig9"):
        needs = registry.select([name])[0].needs("digits")
        assert {"digits-cw_bass-1_8", "digits-farcluss-1_8"} <= set(needs), name
    assert ("CW-BASS", "Mean Teacher") in PRESETS["digits"].compare
    for name, full in (("cw_bass_ablation", "CW-BASS (full)"), ("farcluss_ablation", "FARCLUSS (full)"),
                       ("cosa_ablation", "CoSA (full)")):
        table = registry.build(name, tmp_path / "none", tmp_path / "out", "digits").table
        last = "CAM pseudo-masks (two stages)" if name == "cosa_ablation" else "Mean Teacher"
        assert list(table["Row"])[0] == full and list(table["Row"])[-1] == last
        assert "paper" not in table.columns and (tmp_path / "out" / f"{name}.md").is_file()
        caption = (tmp_path / "out" / f"{name}.md").read_text().splitlines()[0]
        supervision = "with image-level labels" if name == "cosa_ablation" else "at 1/8 labels"
        assert supervision in caption and ("1/8" in caption) == (name != "cosa_ablation"), caption


def test_figures_skip_artefacts_without_any_run_and_refuse_unknown_names(tmp_path, capsys):
    logged = []
    errors = regenerate(tmp_path / "runs", tmp_path / "out", only=["table4", "fig8"], log=logged.append)
    assert errors == {"table4": "skipped: no runs", "fig8": "skipped: no runs"}
    assert logged[-1] == "skipped (none of their runs exist): table4, fig8"
    assert cli.main(["figures", "--runs", str(tmp_path), "--only", "fig77"]) == 2
    assert cli.main(["figures", "--runs", str(tmp_path), "--preset", "kitti"]) == 2
    assert "unknown figures preset 'kitti'" in capsys.readouterr().err


def test_figures_start_the_artefacts_that_load_networks_first(tmp_path, monkeypatch):
    """Fig. 7's t-SNE is the longest build: queued behind the tables it would finish alone on one core."""
    import reprokit.figures as figures

    started = []
    monkeypatch.setattr(figures, "missing_runs", lambda runs, preset: {})
    monkeypatch.setattr(figures, "execute_logged", lambda notebook, *a, **k: started.append(Path(notebook).stem))
    errors = regenerate(tmp_path / "runs", tmp_path / "out", only=["summary", "table4", "fig7", "fig9"], jobs=1,
                        log=lambda line: None)
    assert errors == dict.fromkeys(["fig7", "fig9", "summary", "table4"])
    assert set(started[:2]) == {"fig7", "fig9"} and set(started[2:]) == {"summary", "table4"}


def test_missing_runs_are_reported_only_for_the_names_a_caller_expects(tmp_path):
    """The main job's quick size never trains the summary's reference rows: they are not reported missing."""
    lines = []
    regenerate(tmp_path / "none", tmp_path / "out", "digits", 1, ["fig6"], log=lines.append,
               expected={"digits-table4-stpg"})
    assert lines[0] == "fig6: missing runs digits-table4-stpg"
    lines.clear()
    regenerate(tmp_path / "none", tmp_path / "out", "digits", 1, ["fig6"], log=lines.append)
    assert lines[0].startswith("fig6: missing runs ") and "digits-fixmatch-1_8" in lines[0]
