"""Sweep cells as SLURM jobs, submitted through submitit (one job array per submission).

Each job executes the cell exactly as the local executor does (``reprokit.experiments.sweep.execute``: the train notebook
through papermill, training in a child process, or under torchrun for cells with ``nproc > 1``), so the run
directory is the same wherever a cell ran. A job that SLURM preempts or stops at its time limit is requeued
by submitit (``CellJob`` is checkpointable) and training resumes from the run's last checkpoint.

The scheduler is asked about job states with ``squeue`` only: ``sacct`` needs an accounting database that
small clusters (and the test cluster) do not run, and a cell's outcome is in its run directory anyway.

A sweep file may hold a ``slurm:`` block (all keys optional); ``reprokit sweep --slurm KEY=VALUE`` overrides
one key::

    slurm:
      partition: gpu
      time: 240                # minutes per job (a requeued job gets the same again)
      gpus_per_cell: 4         # default: the sweep's nproc when nproc > 1, else none
      cpus_per_cell: 8
      mem_gb: 64
      account: my-lab
      qos: normal
      constraint: a100
      array_parallelism: 16    # cells of one array running at once
      sbatch: {exclusive: true, mail-type: END}   # any other sbatch option
      setup: ["module load cuda/12.4"]             # shell lines run before the job starts
"""
from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from reprokit.config import ConfigError
from reprokit.records import write_json_atomic

SUBMITTED = "slurm-job.json"
_INT_KEYS = ("time", "gpus_per_cell", "cpus_per_cell", "array_parallelism")
_STR_KEYS = ("partition", "account", "qos", "constraint")


@dataclass
class SlurmOptions:
    partition: str | None = None
    time: int = 60
    gpus_per_cell: int | None = None
    cpus_per_cell: int = 2
    mem_gb: float | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    array_parallelism: int = 32
    sbatch: dict = field(default_factory=dict)
    setup: list = field(default_factory=list)

    def executor_parameters(self, nproc: int) -> dict:
        """Parameters of ``submitit.AutoExecutor.update_parameters`` for cells of ``nproc`` processes."""
        gpus = self.gpus_per_cell if self.gpus_per_cell is not None else (nproc if nproc > 1 else 0)
        params = {"timeout_min": self.time, "cpus_per_task": self.cpus_per_cell, "nodes": 1, "tasks_per_node": 1,
                  "slurm_array_parallelism": self.array_parallelism,
                  "slurm_additional_parameters": dict(self.sbatch), "slurm_setup": list(self.setup)}
        if gpus:
            params["gpus_per_node"] = gpus
        if self.mem_gb is not None:
            params["mem_gb"] = self.mem_gb
        params.update({f"slurm_{k}": getattr(self, k) for k in _STR_KEYS if getattr(self, k) is not None})
        return params


def slurm_options(block: dict | None, overrides: list[str] = (), where: str = "slurm") -> SlurmOptions:
    """Options from a sweep file's ``slurm:`` block and ``KEY=VALUE`` overrides; errors name the key."""
    raw = dict(block or {})
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a mapping of SLURM options")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--slurm {item!r}: expected KEY=VALUE")
        raw[key.strip()] = yaml.safe_load(value)
    known = {f.name for f in fields(SlurmOptions)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {unknown}; known: {sorted(known)}")
    for key in _INT_KEYS:
        value = raw.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < (key != "gpus_per_cell")):
            raise ConfigError(f"{where}.{key}: expected a positive whole number (got {value!r})")
    for key in _STR_KEYS:
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise ConfigError(f"{where}.{key}: expected a string (got {raw[key]!r})")
    if raw.get("mem_gb") is not None and (not isinstance(raw["mem_gb"], (int, float)) or raw["mem_gb"] <= 0):
        raise ConfigError(f"{where}.mem_gb: expected a positive number (got {raw['mem_gb']!r})")
    if not isinstance(raw.get("sbatch", {}), dict):
        raise ConfigError(f"{where}.sbatch: expected a mapping of sbatch options (got {raw['sbatch']!r})")
    setup = raw.get("setup", [])
    if not isinstance(setup, list) or not all(isinstance(s, str) for s in setup):
        raise ConfigError(f"{where}.setup: expected a list of shell lines (got {setup!r})")
    return SlurmOptions(**raw)


class CellJob:
    """The callable a SLURM job runs: ``run(cell, notebook)`` for one sweep cell (the sweep's executor, handed
    in so that this module needs nothing of the sweep's). Checkpointable in submitit's sense: on preemption or
    time-out it asks to be requeued with the same call, and the training inside resumes from its checkpoint."""

    def __init__(self, run):
        self.run = run

    def __call__(self, cell, notebook: str) -> dict:
        return self.run(cell, notebook)

    def checkpoint(self, cell, notebook: str):
        import submitit

        return submitit.helpers.DelayedSubmission(CellJob(self.run), cell, notebook)


def submit(cells: list, notebook: str, runs: Path, name: str, options: SlurmOptions, run, nproc: int = 1,
           cluster: str = "slurm") -> list:
    """Submit ``cells`` as one job array, each job calling ``run(cell, notebook)``; writes each cell's
    ``slurm-job.json`` (job id, log). ``cluster`` is submitit's cluster name ("local" runs the same jobs as
    local processes, for tests)."""
    import submitit

    executor = submitit.AutoExecutor(folder=runs / ".slurm" / "%j", cluster=cluster)
    params = options.executor_parameters(nproc)
    if cluster != "slurm":  # submitit refuses options of a cluster it is not using
        params = {k: v for k, v in params.items() if not k.startswith("slurm_") and k != "gpus_per_node"}
    executor.update_parameters(name=f"reprokit-{name}", **params)
    with executor.batch():
        jobs = [executor.submit(CellJob(run), cell, notebook) for cell in cells]
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    for cell, job in zip(cells, jobs):
        cell.run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(cell.run_dir / SUBMITTED, {"job_id": str(job.job_id), "log": str(job.paths.stdout),
                                                     "submitted": stamp, "cluster": cluster})
    return jobs


def submission(run_dir: Path) -> dict | None:
    path = run_dir / SUBMITTED
    return json.loads(path.read_text()) if path.is_file() else None


def queue_states(job_ids: set[str]) -> dict[str, str] | None:
    """SLURM state ('PENDING', 'RUNNING', ...) of each listed job still known to the scheduler, array tasks
    one by one ('123_4'); None when ``squeue`` is missing or fails (the caller must not guess)."""
    if not job_ids:
        return {}
    if shutil.which("squeue") is None:
        return None
    bases = sorted({j.split("_")[0] for j in job_ids})
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T", "-j", ",".join(bases)], capture_output=True,
                             text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode and "Invalid job id" not in out.stderr:  # squeue errors on ids that left the queue
        return None
    states = dict(line.strip().split("|", 1) for line in out.stdout.splitlines() if "|" in line)
    return {j: s for j, s in states.items() if j in job_ids or j.split("_")[0] in job_ids}
