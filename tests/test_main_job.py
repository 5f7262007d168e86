"""The README's main job: pretrained weights first, the sweeps of its size, then the artefacts and a timing
record with peak memory."""
import json
import re
import threading
import time
from concurrent.futures import Future

import pytest
import yaml

from reprokit import main
from reprokit.viz import registry
from tests.test_sweep import ROOT, write_sweep


@pytest.mark.slow
def test_main_job_trains_builds_artefacts_and_records_timing(tmp_path, digits_root, monkeypatch):
    """Two job slots: the short cell ends first, and Table 4, which reads only it, is built while the long
    one still trains; the summary reads both and follows the training."""
    long = ["train.iters=500", "train.ckpt_every=500", "train.log_every=500"]
    sweep = write_sweep(tmp_path, digits_root, [{"seeds": [0], "name": "digits-table4-ls"},
                                                {"seeds": [0], "name": "digits-fixmatch-1_8", "set": long}])
    cfg = yaml.safe_load((tmp_path / "tiny.yaml").read_text())
    built = []
    monkeypatch.setattr(main, "pretrain_weights", lambda config, threads: built.append((config, threads)))
    monkeypatch.setitem(main.SIZES, "tiny", main.MainJob((str(sweep),), str(tmp_path / "tiny.yaml"),
                                                         ("summary", "table4")))
    monkeypatch.chdir(ROOT)  # the artefact notebooks are found relative to the repository
    out = tmp_path / "figures"
    timing = main.run_main_job("tiny", out, jobs=2, data_root=cfg["data"]["root"])
    assert built == [(str(tmp_path / "tiny.yaml"), 2)]
    assert timing["failed"] == [] and timing["cells_run"] == 2 and timing["peak_rss_mib"] > 50
    assert timing["built_beside_training"] == ["table4"]
    assert (out / "table4.md").is_file() and (out / "notebooks" / "table4.ipynb").is_file()
    assert not (out / main.BESIDE_TRAINING).exists()
    recorded = json.loads((out / "main_tiny.timing.json").read_text())
    assert recorded["pretrain_seconds"] >= 0
    assert sorted(recorded["cells"]) == ["digits-fixmatch-1_8-s0", "digits-table4-ls-s0"]
    cell = recorded["cells"]["digits-table4-ls-s0"]
    assert cell["seconds"] > 0 and 0 < cell["sec_per_step"] < cell["seconds"]
    assert "| supervised |" in (out / "summary.md").read_text()
    assert main.cells_to_train((str(sweep),)) == [], "a second run trains nothing"


def quick_cells(tmp_path):
    """The quick job's cells with their run folders under ``tmp_path``, and their config names."""
    from reprokit.experiments.sweep import Cell

    configs = {"ls": "table4/ls", "stpg": "table4/stpg", "mt": "table4/mt", "fixmatch": "fixmatch"}
    cells = {k: Cell(f"{k}-s0", str(ROOT / "params/digits" / f"{c}.yaml"), [], tmp_path / f"{k}-s0")
             for k, c in configs.items()}
    return cells, {c.cell_id: c.config_name() for c in cells.values()}


def finish(*cells, state="finished"):
    for cell in cells:
        cell.run_dir.mkdir(parents=True, exist_ok=True)
        (cell.run_dir / "sweep-cell.json").write_text(json.dumps({"cell": cell.cell_id, "state": state}))


def test_an_artefact_is_ready_when_a_slot_idles_and_the_runs_it_reads_are_trained(tmp_path):
    cells, names = quick_cells(tmp_path)
    fig6, fig7, table4, tables = registry.select(["fig6", "fig7", "table4", "tables_1_3"])
    finish(cells["stpg"])  # a record of an earlier execution: this job trains STPG again
    since = time.time() + 1  # records written before the job started are older than this

    def ready(waiting, jobs=2):
        return main.ready_artefact(waiting, list(cells.values()), names, jobs, since)

    assert names["stpg-s0"] == "digits-table4-stpg" and names["fixmatch-s0"] == "digits-fixmatch-1_8"
    assert not cells["stpg"].finished(since) and cells["stpg"].finished()
    time.sleep(1.1)
    finish(cells["ls"], cells["mt"])
    finish(cells["stpg"], state="running")
    assert ready([fig7, tables]) is None  # STPG and FixMatch still hold both slots
    assert ready([fig7, tables], jobs=3) is tables  # a slot idles; Fig. 7 waits for STPG, Tables 1-3 read no cell
    finish(cells["stpg"])
    assert ready([fig6, fig7]) is fig7  # Fig. 6 also reads FixMatch, which still trains
    # Table 4's +DM rows are no cell of this job: they are not waited for
    assert ready([fig6, table4]) is table4
    finish(cells["fixmatch"])
    assert ready([fig6]) is None  # every cell finished: the rest is built after the sweeps, both slots at once


def test_artefacts_are_built_in_the_idle_slot_while_the_last_cell_trains(tmp_path, monkeypatch):
    cells, names = quick_cells(tmp_path)
    finish(cells["ls"], cells["mt"], cells["stpg"])
    training, built = Future(), []

    def end_training():
        if not training.done():
            training.set_result([])

    def regenerate(runs, out, preset, jobs, only, params=None, expected=None):
        built.append((only, out, training.done()))
        if only == ["table4"]:  # FixMatch ends while Table 4 is built; the sweep returns a little later
            finish(cells["fixmatch"])
            threading.Timer(0.2, end_training).start()
        return dict.fromkeys(only)

    threading.Timer(10, end_training).start()  # a regression fails the assertions below instead of hanging
    monkeypatch.setattr(main, "regenerate", regenerate)
    errors = main.build_beside_training(training, list(cells.values()), names, 0.0, "runs", tmp_path / "staged",
                                        ("summary", "table4", "fig6", "fig7"), jobs=2, poll=0.01)
    # the network artefact first; Fig. 6 and the summary read FixMatch and are left for after the sweeps
    staged = tmp_path / "staged"
    assert built == [(["fig7"], staged, False), (["table4"], staged, False)]
    assert errors == {"fig7": None, "table4": None}
    assert main.build_beside_training(training, list(cells.values()), names, 0.0, "runs", staged, ("fig6",), 2) == {}


def test_staged_artefacts_replace_the_outputs_and_the_staging_folder_goes(tmp_path):
    out, staged = tmp_path / "figures", tmp_path / "figures" / main.BESIDE_TRAINING
    (out / "notebooks").mkdir(parents=True)
    (out / "table4.md").write_text("old")
    (out / "fig6.png").write_text("kept")
    (staged / "notebooks").mkdir(parents=True)
    (staged / "table4.md").write_text("new")
    (staged / "notebooks" / "table4.ipynb").write_text("{}")
    main.move_into(staged, out)
    assert (out / "table4.md").read_text() == "new" and (out / "fig6.png").read_text() == "kept"
    assert (out / "notebooks" / "table4.ipynb").is_file() and not staged.exists()


def test_the_job_trains_only_cells_not_done(tmp_path, digits_root):
    sweep = write_sweep(tmp_path, digits_root, [{"seeds": [0, 1], "name": "digits-table4-ls"}])
    assert [c.cell_id for c in main.cells_to_train((str(sweep),))] == ["digits-table4-ls-s0", "digits-table4-ls-s1"]


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


def test_committed_quick_summary_quotes_the_archived_main_job_records():
    """figures/summary.md shows exactly the quick sweep's cells, each mIoU its record's (docs/runs/quick), beside
    the committed measurement: a rebuilt main job with other numbers or cells fails here until it is rebuilt."""
    from reprokit.experiments.sweep import expand

    rows = {"supervised": "digits-table4-ls", "Mean Teacher": "digits-table4-mt",
            "FixMatch": "digits-fixmatch-1_8", "STPG": "digits-table4-stpg"}
    text = (ROOT / "figures" / "summary.md").read_text()
    assert "Committed measurement: the records in docs/runs/benchmark" in text and "vary by processor" in text
    quoted = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("|") and re.fullmatch(r"\d+\.\d\d", cells[1]):
            quoted[cells[0]] = float(cells[1])
    _, sweep_cells = expand(ROOT / "params/sweeps/quick.yaml")
    assert sorted(rows[label] + "-s0" for label in quoted) == sorted(c.cell_id for c in sweep_cells)
    for label, value in quoted.items():
        record = json.loads((ROOT / "docs/runs/quick" / f"{rows[label]}-s0" / "eval.json").read_text())
        assert value == round(100 * record["miou"], 2), label
