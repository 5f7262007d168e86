"""Where a sweep's cells run and how a person follows them: cell states from run directories and the
scheduler, SLURM options, submission through submitit (its local executor stands in for SLURM here; the
real one-node cluster is in test_slurm_e2e.py), the live display, and kernel output kept in a log file."""
import io
import json
import os
import socket
import sys
from pathlib import Path

import pytest

from reprokit.config import ConfigError
from reprokit.experiments.progress import SweepDisplay, run_progress
from reprokit.runs.origin import CELL_RECORD
from reprokit.experiments.slurm import SUBMITTED, CellJob, queue_states, slurm_options
from reprokit.experiments.sweep import execute, expand, in_flight, run_sweep, status, sweep_report
from tests.test_sweep import write_sweep

ROOT = Path(__file__).resolve().parents[1]


def test_slurm_options_validate_and_map_to_submitit(tmp_path):
    opts = slurm_options({"partition": "gpu", "time": 240, "sbatch": {"exclusive": True}}, ["mem_gb=64", "account=lab"])
    params = opts.executor_parameters(nproc=4)
    assert params["slurm_partition"] == "gpu" and params["timeout_min"] == 240 and params["mem_gb"] == 64
    assert params["gpus_per_node"] == 4, "a multi-process cell asks for one GPU per process by default"
    assert params["slurm_account"] == "lab" and params["slurm_additional_parameters"] == {"exclusive": True}
    assert "gpus_per_node" not in slurm_options({}).executor_parameters(nproc=1)
    assert slurm_options({"gpus_per_cell": 0}).executor_parameters(nproc=4).get("gpus_per_node") is None
    with pytest.raises(ConfigError, match=r"sweep.yaml: slurm: unknown option\(s\) \['partiton'\]"):
        slurm_options({"partiton": "gpu"}, where="sweep.yaml: slurm")
    with pytest.raises(ConfigError, match=r"slurm.time: expected a positive whole number \(got -5\)"):
        slurm_options({}, ["time=-5"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        slurm_options({}, ["partition"])
    with pytest.raises(ConfigError, match=r"slurm.setup: expected a list of shell lines"):
        slurm_options({"setup": "module load cuda"})


def test_a_bad_slurm_block_fails_when_the_sweep_file_is_read(tmp_path, digits_root):
    path = write_sweep(tmp_path, digits_root, [{"seeds": [0]}], slurm={"gpus": 2})
    with pytest.raises(ConfigError, match=r"sweep.yaml: slurm: unknown option\(s\) \['gpus'\]"):
        expand(path)


def test_cell_job_requeues_itself_with_the_same_call():
    delayed = CellJob(execute).checkpoint("the-cell", "nb.ipynb")
    assert isinstance(delayed.function, CellJob) and delayed.args == ("the-cell", "nb.ipynb")
    assert delayed.function.run is execute


def fake_squeue(tmp_path, monkeypatch, lines: str, rc: int = 0):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "squeue"
    script.write_text(f"#!/bin/sh\necho \"$@\" > {bin_dir}/args\nprintf '{lines}'\nexit {rc}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir / "args"


def test_queue_states_asks_squeue_once_per_array(tmp_path, monkeypatch):
    args = fake_squeue(tmp_path, monkeypatch, "17_0|RUNNING\\n17_1|PENDING\\n99|COMPLETING\\n5|RUNNING\\n")
    states = queue_states({"17_0", "17_1", "17_2", "99"})
    assert states == {"17_0": "RUNNING", "17_1": "PENDING", "99": "COMPLETING"}
    assert args.read_text().split()[-1] == "17,99"
    fake_squeue(tmp_path, monkeypatch, "", rc=1)
    assert queue_states({"3"}) is None, "a failing squeue must not read as 'every job left the queue'"


def test_cell_states_from_records_and_the_scheduler(tmp_path, digits_root, monkeypatch):
    _, (cell,) = expand(write_sweep(tmp_path, digits_root, [{"seeds": [0]}]))
    cell.run_dir.mkdir(parents=True)
    here = {"host": socket.gethostname(), "param_hash": cell.param_hash(), "parameters": cell.parameters()}
    record = cell.run_dir / CELL_RECORD
    record.write_text(json.dumps({"state": "running", "pid": os.getpid(), "job_id": None, **here}))
    assert status(cell) == "running"
    record.write_text(json.dumps({"state": "running", "pid": 2 ** 22 + 7, "job_id": None, **here}))
    assert status(cell) == "failed", "a running record whose process is gone is an interrupted cell"

    record.unlink()
    (cell.run_dir / SUBMITTED).write_text(json.dumps({"job_id": "42_3", "cluster": "slurm", "log": "x.out"}))
    assert status(cell, queue={"42_3": "PENDING"}) == "queued"
    assert status(cell, queue={"42_3": "RUNNING"}) == "running"
    assert status(cell, queue={}) == "failed", "submitted, left the queue, never wrote a record"
    fake_squeue(tmp_path, monkeypatch, "", rc=1)
    assert status(cell) == "submitted", "the scheduler cannot be asked: never guess the job is gone"
    record.write_text(json.dumps({"state": "running", "pid": 1, "job_id": "42_3", **here}))
    assert status(cell, queue={"42_3": "REQUEUED"}) == "queued"

    logs = []
    fake_squeue(tmp_path, monkeypatch, "42_3|RUNNING\\n")
    assert run_sweep(write_sweep(tmp_path, digits_root, [{"seeds": [0]}]), log=logs.append) == []
    assert "skip   tiny-s0 (running, job 42_3)" in logs, "a cell still in the queue is never submitted twice"
    (cell.run_dir / "meta.json").write_text(json.dumps({"total_steps": 40}))
    (cell.run_dir / "metrics.jsonl").write_text('{"step": 10, "sec_per_iter": 0.5}\n{"step": 20, "sec_per_i')
    assert sweep_report(write_sweep(tmp_path, digits_root, [{"seeds": [0]}])) == [
        {"cell": "tiny-s0", "state": "running", "detail": "step 10/40, job 42_3"}]


def test_in_flight_ignores_finished_records():
    assert in_flight({"state": "finished", "pid": os.getpid(), "host": socket.gethostname()}, None) is None
    assert in_flight(None, None) is None


def test_run_progress_reads_step_and_time_left(tmp_path):
    assert run_progress(tmp_path) is None
    (tmp_path / "meta.json").write_text(json.dumps({"total_steps": 100}))
    (tmp_path / "metrics.jsonl").write_text('{"step": 40, "sec_per_iter": 0.5}\n{"step": 5')
    assert run_progress(tmp_path) == (40, 100, 30.0)


def test_display_logs_one_line_per_start_in_batch_mode(tmp_path):
    lines = []
    display = SweepDisplay("s", {"a": tmp_path / "a", "b": tmp_path / "b"}, lines.append, interactive=False)
    display.update({"a": "running", "b": "queued"})
    display.update({"a": "running", "b": "running"})
    display.update({"a": "done", "b": "running"})
    display.close()
    assert lines == ["start  a", "start  b"]


def test_display_shows_counts_and_the_running_cells_steps(tmp_path, monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    run = tmp_path / "a"
    run.mkdir()
    (run / "meta.json").write_text(json.dumps({"total_steps": 4000}))
    (run / "metrics.jsonl").write_text('{"step": 1200, "sec_per_iter": 0.2}\n')
    display = SweepDisplay("bench", {"a": run, "b": tmp_path / "b", "c": tmp_path / "c"}, print, interactive=True)
    display.update({"a": "running", "b": "failed", "c": "queued"})
    text = err.getvalue()
    display.close()
    assert "bench" in text and "1/3" in text and "running 1" in text and "failed 1" in text and "queued 1" in text
    assert "1200/4000 steps" in text and "left 9m20s" in text


def test_kernel_output_goes_to_its_log_not_the_terminal(tmp_path, capfd):
    import nbformat

    from reprokit.experiments.kernels import execute_logged

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import os; os.write(2, b'kernel-side noise\\n')")]
    nbformat.write(nb, tmp_path / "in.ipynb")
    execute_logged(tmp_path / "in.ipynb", tmp_path / "out.ipynb", {}, tmp_path / "k" / "kernel.log")
    out, err = capfd.readouterr()
    assert "kernel-side noise" not in out + err and "kernel-side noise" in (tmp_path / "k" / "kernel.log").read_text()


@pytest.mark.slow
def test_sweep_through_submitit_skips_done_cells_and_reports_failures(tmp_path, digits_root, monkeypatch):
    """The SLURM executor's whole path (submission, records, waiting, outcome, failure report, skip on
    rerun) with submitit's local executor standing in for the scheduler."""
    monkeypatch.chdir(ROOT)
    blocks = [{"seeds": [0, 1]}, {"name": "broken", "seeds": [0], "set": ["data.labeled_fraction=2.0"]}]
    path = write_sweep(tmp_path, digits_root, blocks, slurm={"time": 10, "cpus_per_cell": 1})
    logs = []
    results = run_sweep(path, log=logs.append, executor="slurm", poll=0.5, cluster="local")
    by_cell = {r["cell"]: r for r in results}
    assert by_cell["tiny-s0"]["ok"] and by_cell["tiny-s1"]["ok"] and not by_cell["broken-s0"]["ok"]
    assert "labeled_fraction" in by_cell["broken-s0"]["error"]
    job_log = by_cell["broken-s0"]["job_log"]
    assert Path(job_log).parent.parent == tmp_path / "runs" / ".slurm"
    assert any(f"job log: {job_log}" in line for line in logs) and any("broken-s0: " in line for line in logs)
    for cell in ("tiny-s0", "tiny-s1"):
        assert (tmp_path / "runs" / cell / "eval.json").is_file()
        assert json.loads((tmp_path / "runs" / cell / SUBMITTED).read_text())["cluster"] == "local"

    results = run_sweep(path, log=logs.append, executor="slurm", poll=0.5, cluster="local")
    assert [r["cell"] for r in results] == ["broken-s0"], "finished cells are skipped, the failed one resubmitted"
    assert {r["state"] for r in sweep_report(path)} == {"done", "failed"}
