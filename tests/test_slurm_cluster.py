"""End to end on a real one-node SLURM cluster (Debian's slurm-wlm + munge, started by tests/slurm_cluster.py):
submitit submits, through sbatch/srun on partition `reprokit`, a job that returns a value, one that raises and one
that is cancelled while it runs."""
import os
import time

import pytest
import submitit
from submitit.core.utils import FailedJobError

from tests.slurm_cluster import local_slurm, slurm_available

REASON = slurm_available()
# CI sets REPROKIT_REQUIRE_E2E=1 so a missing SLURM (or not being root) fails instead of skipping.
MISSING = REASON is not None and os.environ.get("REPROKIT_REQUIRE_E2E") != "1"
pytestmark = [pytest.mark.e2e, pytest.mark.slow,
              pytest.mark.skipif(MISSING, reason=f"{REASON} (make test installs slurm-wlm and munge as root)")]


def completion_state(job, wait_s=30.0):
    """SLURM's final state of `job` as submitit reads it, once the completion log lists the job."""
    deadline = time.monotonic() + wait_s
    while "State" not in (info := job.get_info()):
        assert time.monotonic() < deadline, f"job {job.job_id} never reached the completion log: {info}"
        time.sleep(0.2)
    return info["State"]


@pytest.mark.timeout(180)
def test_submitit_jobs_run_on_local_slurm(tmp_path, monkeypatch):
    # nested functions: cloudpickle ships them by value, so the jobs need not import this module
    def affine(x, y):
        return x * x + y

    def explode(message):
        raise ValueError(message)

    def linger():
        time.sleep(120)

    with local_slurm(tmp_path / "cluster") as cluster:
        for key, value in cluster.env.items():
            monkeypatch.setenv(key, value)
        executor = submitit.AutoExecutor(folder=tmp_path / "jobs", cluster="slurm")
        executor.update_parameters(slurm_partition=cluster.partition, timeout_min=2, cpus_per_task=1,
                                   name="reprokit-e2e")
        good = executor.submit(affine, 3, 4)
        bad = executor.submit(explode, "boom from a SLURM job")
        assert isinstance(good, submitit.SlurmJob) and good.job_id.isdigit()

        assert good.result() == 13
        with pytest.raises(FailedJobError, match="boom from a SLURM job"):
            bad.result()
        assert good.done() and bad.done()
        assert isinstance(bad.exception(), FailedJobError)
        # the states submitit reads through sacct (the cluster's --completion shim) are SLURM's own; the result
        # file is written before the job ends, so its completion record may lag result() by a moment
        assert completion_state(good) == "COMPLETED"
        assert completion_state(bad) == "FAILED"

        # a job that never writes a result: done() must still turn true once SLURM has cancelled it
        slow = executor.submit(linger)
        deadline = time.monotonic() + 30
        while "RUNNING" not in cluster.run("squeue", "--noheader", f"--jobs={slow.job_id}", "--format=%T"):
            assert time.monotonic() < deadline, "the cancellable job never started"
            time.sleep(0.2)
        slow.cancel()
        while not slow.done(force_check=True):
            assert time.monotonic() < deadline, f"cancelled job not done; submitit state {slow.state}"
            time.sleep(0.5)
        assert slow.state == "CANCELLED"

        # SLURM itself saw all three (squeue keeps finished jobs for MinJobAge; the cancelled one may be
        # COMPLETING for KillWait seconds after its completion record is written)
        while True:
            states = dict(line.split() for line in cluster.run(
                "squeue", "--noheader", "--states=all", "--format=%i %T").splitlines())
            if "COMPLETING" not in states.values() or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert states == {good.job_id: "COMPLETED", bad.job_id: "FAILED", slow.job_id: "CANCELLED"}
