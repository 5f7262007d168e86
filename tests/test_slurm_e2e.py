"""A sweep of digit-scene cells through a real one-node SLURM cluster (Debian's slurm-wlm, started by
tests/slurm_cluster.py): submission as a job array, --status while jobs are queued and running, no double
submission, results, the failure report, and skip-on-rerun. CI requires it (REPROKIT_REQUIRE_E2E=1)."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reprokit.experiments.progress import run_progress
from reprokit.experiments.slurm import SUBMITTED, queue_states
from reprokit.experiments.sweep import IN_FLIGHT, expand, run_sweep, sweep_report, sweep_states
from tests.slurm_cluster import local_slurm, slurm_available
from tests.test_sweep import write_sweep

ROOT = Path(__file__).resolve().parents[1]
UNAVAILABLE = slurm_available()
pytestmark = [pytest.mark.e2e, pytest.mark.slow,
              pytest.mark.skipif(UNAVAILABLE is not None and os.environ.get("REPROKIT_REQUIRE_E2E") != "1",
                                 reason=f"no local SLURM ({UNAVAILABLE}); make test installs it as root")]


def wait_until_settled(path, timeout=300):
    _, cells = expand(path)
    deadline = time.time() + timeout
    while time.time() < deadline:
        states = sweep_states(cells)
        if not any(s in IN_FLIGHT for s in states.values()):
            return states
        time.sleep(1)
    raise AssertionError(f"cells still in flight after {timeout} s: {states}")


def test_sweep_on_slurm(tmp_path, digits_root, monkeypatch):
    assert UNAVAILABLE is None, UNAVAILABLE
    monkeypatch.chdir(ROOT)
    with local_slurm(tmp_path / "cluster") as cluster:
        for key, value in cluster.env.items():
            monkeypatch.setenv(key, value)
        blocks = [{"seeds": [0, 1]}, {"name": "broken", "seeds": [0], "set": ["data.labeled_fraction=2.0"]}]
        path = write_sweep(tmp_path, digits_root, blocks,
                           slurm={"partition": cluster.partition, "time": 10, "cpus_per_cell": 1})

        # submit without waiting, one cell of the array at a time: the others wait in the queue
        logs = []
        assert run_sweep(path, log=logs.append, executor="slurm", slurm=["array_parallelism=1"],
                         wait_for_jobs=False) == []
        jobs = {c.cell_id: json.loads((c.run_dir / SUBMITTED).read_text())["job_id"] for c in expand(path)[1]}
        assert len({j.split("_")[0] for j in jobs.values()}) == 1, "one job array for the whole submission"
        report = {r["cell"]: r for r in sweep_report(path)}
        assert any(r["state"] == "queued" and jobs[c] in r["detail"] for c, r in report.items()), report
        status = subprocess.run([sys.executable, "-m", "reprokit.cli", "sweep", str(path), "--status"],
                                capture_output=True, text=True, env={**os.environ, **cluster.env}, check=True)
        assert "queued" in status.stdout and jobs["tiny-s1"] in status.stdout

        # a second sweep while they are in the queue submits nothing
        again = []
        assert run_sweep(path, log=again.append, executor="slurm") == []
        assert any(line.startswith("skip   tiny-s1 (") and jobs["tiny-s1"] in line for line in again), again
        assert "t: 3 cells, 0 to run, as SLURM jobs" in again

        states = wait_until_settled(path)
        assert states == {"tiny-s0": "done", "tiny-s1": "done", "broken-s0": "failed"}
        for cell in ("tiny-s0", "tiny-s1"):
            assert json.loads((tmp_path / "runs" / cell / "eval.json").read_text())["miou"] >= 0

        # rerun and wait: only the failed cell is resubmitted, and the report names its notebook and job log
        logs = []
        results = run_sweep(path, log=logs.append, executor="slurm", poll=1.0)
        assert [r["cell"] for r in results] == ["broken-s0"] and not results[0]["ok"]
        assert "labeled_fraction" in results[0]["error"]
        assert Path(results[0]["job_log"]).is_file() and Path(results[0]["notebook"]).is_file()
        assert any(f"job log: {results[0]['job_log']}" in line for line in logs)
        assert any(line.startswith("skip   tiny-s0 (done") for line in logs)
        assert json.loads((tmp_path / "runs" / "broken-s0" / SUBMITTED).read_text())["job_id"] != jobs["broken-s0"]


def test_a_requeued_cell_resumes_from_its_checkpoint(tmp_path, digits_root, monkeypatch):
    """Preemption as SLURM does it (kill and requeue): the cell's next start resumes its training from the
    last checkpoint and finishes; the sweep counts it done."""
    assert UNAVAILABLE is None, UNAVAILABLE
    monkeypatch.chdir(ROOT)
    with local_slurm(tmp_path / "cluster") as cluster:
        for key, value in cluster.env.items():
            monkeypatch.setenv(key, value)
        path = write_sweep(tmp_path, digits_root, [{"seeds": [0]}],
                           common=("train.iters=160", "train.ckpt_every=20", "train.log_every=10"),
                           slurm={"partition": cluster.partition, "time": 10, "cpus_per_cell": 1})
        run_sweep(path, log=lambda m: None, executor="slurm", wait_for_jobs=False)
        (cell,) = expand(path)[1]
        job = json.loads((cell.run_dir / SUBMITTED).read_text())["job_id"]
        deadline = time.time() + 180
        while not ((cell.run_dir / "checkpoint.pt").is_file() and (run_progress(cell.run_dir) or (0,))[0] >= 40):
            assert time.time() < deadline, "the cell never reached step 40"
            time.sleep(0.5)
        cluster.run("scontrol", "requeue", job)
        assert sweep_states([cell])[cell.cell_id] in IN_FLIGHT, "a requeued cell is still the scheduler's"
        for _ in range(120):  # SLURM holds a requeued job back (begin time); once it is pending, start it now
            if queue_states({job}).get(job) == "PENDING":
                cluster.run("scontrol", "update", f"jobid={job}", "StartTime=now")
                break
            time.sleep(0.5)
        assert wait_until_settled(path) == {cell.cell_id: "done"}
        resumed = [line for line in (cell.run_dir / "train.ipynb").read_text().splitlines() if "resuming" in line]
        assert resumed and int(resumed[0].split("(step ")[1].split(")")[0]) >= 20, resumed
        assert json.loads((cell.run_dir / "meta.json").read_text())["step"] == 160
