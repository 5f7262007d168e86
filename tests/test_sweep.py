"""Sweeps: grid expansion, skip of completed cells, rerun of failed or changed cells, failure isolation,
and two cells executed in parallel."""
import json
from pathlib import Path

import pytest
import yaml

from reprokit.experiments.allocator import tcmalloc_library
from reprokit.config import ConfigError
from reprokit.machine import machine_description
from reprokit.runs.origin import CELL_RECORD
from reprokit.runs.results import archive_runs, finished_runs
from reprokit.experiments.sweep import expand, run_sweep, status
from tests.conftest import tiny_raw

ROOT = Path(__file__).resolve().parents[1]


def write_sweep(tmp_path, digits_root, blocks, common=("train.iters=3",), **settings):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_raw(digits_root)))
    spec = {"name": "t", "runs": str(tmp_path / "runs"), "notebook": str(ROOT / "notebooks" / "train.ipynb"),
            "set": list(common), "blocks": [{**b, "configs": [str(cfg)]} for b in blocks], **settings}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_expand_grid_names_and_overrides(tmp_path, digits_root):
    path = write_sweep(tmp_path, digits_root, [{"seeds": [0, 1], "grid": {"optim.lr": [0.01, 0.02]}},
                                               {"name": "other", "seeds": [5]}])
    settings, cells = expand(path)
    assert [c.cell_id for c in cells] == ["tiny-s0-lr0.01", "tiny-s0-lr0.02", "tiny-s1-lr0.01", "tiny-s1-lr0.02",
                                          "other-s5"]
    assert "train.seed=1" in cells[2].overrides and "optim.lr=0.01" in cells[2].overrides
    assert cells[4].run_dir == tmp_path / "runs" / "other-s5"
    assert len({c.param_hash() for c in cells}) == 5


def test_expand_rejects_bad_files(tmp_path, digits_root):
    with pytest.raises(ConfigError, match="not found"):
        expand(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"blocks": [{"configs": ["missing.yaml"]}]}))
    with pytest.raises(ConfigError, match=r"blocks\[0\]: config file not found"):
        expand(bad)


@pytest.mark.slow
def test_sweep_parallel_skip_failure_isolation_and_change(tmp_path, digits_root):
    logs = []
    # two good cells and one whose override is invalid (fails inside the notebook)
    blocks = [{"seeds": [0, 1]}, {"name": "broken", "seeds": [0], "set": ["data.labeled_fraction=2.0"]}]
    path = write_sweep(tmp_path, digits_root, blocks)
    results = run_sweep(path, jobs=2, stagger=1.0, log=logs.append)
    by_cell = {r["cell"]: r for r in results}
    assert by_cell["tiny-s0"]["ok"] and by_cell["tiny-s1"]["ok"] and not by_cell["broken-s0"]["ok"]
    assert {by_cell["tiny-s0"]["device"], by_cell["tiny-s1"]["device"]} == {None}
    failed_nb = Path(by_cell["broken-s0"]["notebook"])
    assert failed_nb.is_file() and any(str(failed_nb) in line for line in logs)
    assert "labeled_fraction" in by_cell["broken-s0"]["error"]
    for cell in ("tiny-s0", "tiny-s1"):
        run = tmp_path / "runs" / cell
        assert (run / "eval.json").is_file() and (run / "train.ipynb").is_file()
        cell_record = json.loads((run / CELL_RECORD).read_text())
        assert cell_record["ok"] and cell_record["machine"] == machine_description()
        assert cell_record["allocator"] == ("tcmalloc" if tcmalloc_library() else "system")

    # rerun: the completed cells are skipped, only the failed one runs again
    results = run_sweep(path, jobs=2, stagger=0.0, log=logs.append)
    assert [r["cell"] for r in results] == ["broken-s0"]

    # change one cell's parameters: its old directory is moved aside and it reruns
    blocks[0]["set"] = ["optim.lr=0.02"]
    blocks[0]["seeds"] = [0, 1]
    path = write_sweep(tmp_path, digits_root, blocks[:1])
    _, cells = expand(path)
    assert status(cells[0]) == "changed"
    results = run_sweep(path, jobs=1, stagger=0.0, log=logs.append)
    assert sorted(r["cell"] for r in results) == ["tiny-s0", "tiny-s1"] and all(r["ok"] for r in results)
    assert len(list((tmp_path / "runs").glob("tiny-s0.replaced-*"))) == 1


def test_param_hash_follows_the_files_not_the_defaults(tmp_path, digits_root, monkeypatch):
    path = write_sweep(tmp_path, digits_root, [{"seeds": [0]}])
    _, (cell,) = expand(path)
    before = cell.param_hash()

    def no_resolving(*args, **kwargs):
        raise AssertionError("the hash must not depend on the resolved config (its defaults)")

    monkeypatch.setattr("reprokit.experiments.sweep.load_config", no_resolving)
    assert cell.param_hash() == before
    cfg = Path(cell.config)
    cfg.write_text(cfg.read_text().replace("lr: 0.01", "lr: 0.02"))
    assert cell.param_hash() != before


def test_split_per_seed_gives_each_seed_its_own_labeled_split(tmp_path, digits_root):
    _, cells = expand(write_sweep(tmp_path, digits_root, [{"seeds": [0, 3]}]))
    assert not any(o.startswith("data.split_seed=") for c in cells for o in c.overrides)
    _, cells = expand(write_sweep(tmp_path, digits_root, [{"seeds": [0, 3]}], split_per_seed=True))
    assert [[o for o in c.overrides if "seed=" in o] for c in cells] == [
        ["train.seed=0", "data.split_seed=0"], ["train.seed=3", "data.split_seed=3"]]
    with pytest.raises(ConfigError, match="split_per_seed must be true or false"):
        expand(write_sweep(tmp_path, digits_root, [{"seeds": [0]}], split_per_seed="yes"))


class InlinePool:
    """Stands in for the process pool: runs each cell in this process (no papermill, no training)."""

    def __init__(self, jobs, mp_context=None, initializer=None, initargs=()):
        initializer(*initargs)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args):
        from concurrent.futures import Future

        fut = Future()
        fut.set_result(fn(*args))
        return fut


def finished_cell(cell, meta):
    """A cell directory as a successful execution leaves it, with the given meta.json."""
    from reprokit.configure import load_config

    cell.run_dir.mkdir(parents=True)
    (cell.run_dir / "config.yaml").write_text(yaml.safe_dump(load_config(cell.config, cell.overrides).to_dict()))
    (cell.run_dir / "eval.json").write_text("{}")
    (cell.run_dir / "meta.json").write_text(json.dumps(meta))
    (cell.run_dir / CELL_RECORD).write_text(json.dumps({"ok": True, "param_hash": cell.param_hash(),
                                                   "parameters": cell.parameters()}))


def test_stale_cells_are_reported_and_rerun_on_request(tmp_path, digits_root, monkeypatch):
    # edits elsewhere in the tree while the tests run change nothing
    monkeypatch.setattr("reprokit.codeversion.CodeVersions.today", lambda self, scheme, method, dataset: "v-now")
    path = write_sweep(tmp_path, digits_root, [{"seeds": [0, 1]}])
    _, (current, old) = expand(path)
    for cell, version, commit in ((current, "v-now", "a"), (old, "older", "b")):
        finished_cell(cell, {"code_version": version, "code_version_scheme": 2,
                             "git": {"commit": commit * 40, "dirty": False}})
    assert (status(current), status(old)) == ("done", "stale")

    logs = []
    assert run_sweep(path, log=logs.append) == []
    assert "skip   tiny-s1 (done, stale: ran code bbbbbbb)" in logs
    assert any(line.startswith("1 cells ran other code") and "--rerun-stale" in line for line in logs)

    executed = []
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr("reprokit.experiments.sweep.ProcessPoolExecutor", InlinePool)
    monkeypatch.setattr("reprokit.experiments.sweep.execute", lambda cell, nb, *_: executed.append(cell.cell_id) or
                        {"cell": cell.cell_id, "ok": True, "seconds": 0.0, "notebook": nb, "error": None})
    results = run_sweep(path, stagger=0.0, log=logs.append, rerun_stale=True)
    assert executed == ["tiny-s1"] and [r["cell"] for r in results] == ["tiny-s1"]
    moved = list((tmp_path / "runs").glob("tiny-s1.replaced-*"))
    assert len(moved) == 1 and json.loads((moved[0] / "meta.json").read_text())["code_version"] == "older"
    assert (current.run_dir / "eval.json").is_file()
    # the run kept aside is not a result: tables and the archive see only the cell's own directory
    assert finished_runs(tmp_path / "runs") == [current.run_dir]
    assert [p.name for p in archive_runs(tmp_path / "runs", tmp_path / "archive")] == [current.run_dir.name]


@pytest.mark.slow
def test_a_terminated_sweep_stops_its_cells(tmp_path, digits_root):
    """SIGTERM to `reprokit sweep` ends the running cell's kernel and training too, not only the sweep: nothing
    goes on writing the run directory, and the queued cell never starts."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    path = write_sweep(tmp_path, digits_root, [{"seeds": [0, 1]}],
                       common=("train.iters=20000", "train.ckpt_every=20000", "train.log_every=1"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "reprokit", "sweep", str(path), "--jobs", "1"], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = tmp_path / "runs" / "tiny-s0" / "metrics.jsonl"
    deadline = time.monotonic() + 180
    while not (metrics.is_file() and metrics.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert metrics.is_file(), "the first cell trains"

    def cell_processes():
        return [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path / "runs") in " ".join(p.info["cmdline"] or ())]

    assert cell_processes(), "the training names its run directory on its command line"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    deadline = time.monotonic() + 30
    while cell_processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not cell_processes()
    size = metrics.stat().st_size
    time.sleep(3)
    assert metrics.stat().st_size == size and not (tmp_path / "runs" / "tiny-s1").exists()
