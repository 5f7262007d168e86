"""Batch execution: expand a sweep file into cells (configs x seeds x hyper-parameter grid) and execute the
train notebook once per cell through papermill, keeping the executed notebook in the cell's run directory.

    reprokit sweep params/sweeps/quick.yaml [--jobs N] [--devices 0,1] [--rerun-stale]
    reprokit sweep params/sweeps/quick.yaml --executor slurm [--slurm partition=gpu] [--no-wait]
    reprokit sweep params/sweeps/quick.yaml --status

A sweep file::

    name: quick
    runs: runs/quick                 # run directories go here, one per cell
    notebook: notebooks/train.ipynb
    set: [train.threads=1]           # settings for every cell
    split_per_seed: false            # true: each seed also draws its own labeled split (data.split_seed=<seed>)
    blocks:
      - configs: [params/digits/table4/ls.yaml, params/digits/table4/stpg.yaml]
        seeds: [0, 1, 2]
      - configs: [params/digits/stpg.yaml]
        name: digits-fig8-bank       # optional: the cells' config name (figures group runs by it)
        grid: {method.bank_size: [0, 64, 128, 256, 512]}
    slurm: {partition: gpu, time: 240}   # optional: options of --executor slurm (see reprokit.experiments.slurm)

By default every seed trains on the same labeled split (``data.split_seed`` of the config), so seeds vary the
initialisation and data order only; ``split_per_seed: true`` makes the seed also pick the labeled subset, so
the spread over seeds includes split-to-split variance, as in papers that average over random splits.

A cell whose record (``sweep-cell.json``) shows the same parameter hash and success is skipped. A failed
cell is rerun (training resumes from its checkpoint); a changed cell's old directory is moved aside, not
deleted. A finished cell whose run ran other code than the current package (its code version differs, or
is unknown) is reported as stale, never passed off as current; ``--rerun-stale`` moves such cells aside
and reruns them. One failing cell never stops the others; failures are listed with their notebook and log.

Cells run as local processes (``--jobs`` at a time) or as SLURM jobs (``--executor slurm``, through
submitit; ``reprokit.experiments.slurm``). Either way a cell's run directory tells its state: ``sweep-cell.json`` is
written when the cell starts ('running', with its host, process and SLURM job id) and when it ends, and a
submitted cell also has ``slurm-job.json``. So ``--status`` can say, without running anything, which cells
are done, queued, running (with their step), failed or stale, and a second ``reprokit sweep`` never submits
a cell that is still queued or running. Each kernel's own output goes to ``kernel.log`` in the run directory.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import multiprocessing as mp
import os
import signal
import socket
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml

from reprokit.experiments.allocator import allocator_name, with_allocator
from reprokit.codeversion import CodeVersions
from reprokit.config import ConfigError, apply_overrides, config_digest, read_yaml
from reprokit.configure import load_config
from reprokit.engine.rundir import RunDirLocked, commit_label, lock_holder, run_dir_lock
from reprokit.experiments.kernels import execute_logged
from reprokit.machine import machine_description
from reprokit.experiments.progress import SweepDisplay, run_progress
from reprokit.runs.origin import CELL_RECORD, run_backbone
from reprokit.records import write_json_atomic
from reprokit.runs.results import REPLACED_MARK
from reprokit.experiments.slurm import SUBMITTED, queue_states, slurm_options, submission, submit

EXECUTED = "train.ipynb"
KERNEL_LOG = "kernel.log"
IN_FLIGHT = ("queued", "running", "submitted")


@dataclass
class Cell:
    cell_id: str
    config: str
    overrides: list[str]
    run_dir: Path
    nproc: int = 1

    def parameters(self) -> dict:
        return {"config": self.config, "overrides": self.overrides, "run_dir": str(self.run_dir), "nproc": self.nproc}

    def param_hash(self) -> str:
        """Changes when the parameters or the settings the params files spell out (``_base_`` chain included)
        change. Defaults are left out on purpose: a newer reprokit that adds a config field with a default
        must not invalidate finished cells."""
        try:
            spec = config_digest(apply_overrides(read_yaml(self.config), self.overrides))
        except ConfigError as exc:  # an unreadable cell still gets a stable hash; it fails when executed
            spec = f"invalid: {exc}"
        text = json.dumps({"parameters": self.parameters(), "config": spec}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def config_name(self) -> str:
        """The experiment name its run will carry (the config's ``name`` after the overrides): what artefacts
        ask for."""
        return load_config(self.config, self.overrides).name

    def finished(self, since: float = 0.0) -> bool:
        """Whether an execution of it that ended at or after ``since`` (seconds since the epoch) is on
        record, well or not; an older record says nothing about an execution started later."""
        path = self.run_dir / CELL_RECORD
        try:  # the sweep may be moving the run folder aside right now
            return path.stat().st_mtime >= since and json.loads(path.read_text()).get("state") == "finished"
        except FileNotFoundError:
            return False


def _slug(key: str, value) -> str:
    return f"{key.split('.')[-1]}{value}".replace("/", "_").replace(" ", "")


def expand(sweep_file: str | Path) -> tuple[dict, list[Cell]]:
    """Read a sweep file; returns its settings and the cells in order. Errors name the file and block."""
    path = Path(sweep_file)
    if not path.is_file():
        raise ConfigError(f"sweep file not found: {path}")
    spec = yaml.safe_load(path.read_text()) or {}
    unknown = set(spec) - {"name", "runs", "notebook", "set", "blocks", "nproc", "split_per_seed", "slurm"}
    if unknown:
        raise ConfigError(f"{path}: unknown sweep key(s) {sorted(unknown)}")
    split_per_seed = spec.get("split_per_seed", False)
    if not isinstance(split_per_seed, bool):
        raise ConfigError(f"{path}: split_per_seed must be true or false (got {split_per_seed!r})")
    runs = Path(spec.get("runs", f"runs/{spec.get('name', path.stem)}"))
    common = list(spec.get("set", []))
    cells, seen = [], {}
    for b, block in enumerate(spec.get("blocks", [])):
        where = f"{path}: blocks[{b}]"
        bad = set(block) - {"configs", "seeds", "grid", "name", "set"}
        if bad or not block.get("configs"):
            raise ConfigError(f"{where}: needs 'configs' and allows seeds, grid, name, set (got {sorted(block)})")
        grid = block.get("grid", {})
        combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] if grid else [{}]
        for config, seed, combo in itertools.product(block["configs"], block.get("seeds", [0]), combos):
            if not Path(config).is_file():
                raise ConfigError(f"{where}: config file not found: {config}")
            name = block.get("name") or load_config(config).name
            seeding = [f"train.seed={seed}", *([f"data.split_seed={seed}"] if split_per_seed else [])]
            overrides = [*common, *block.get("set", []), f"name={name}", *seeding,
                         *[f"{k}={json.dumps(v)}" for k, v in combo.items()]]
            cell_id = "-".join([name, f"s{seed}", *[_slug(k, v) for k, v in combo.items()]])
            if cell_id in seen:
                raise ConfigError(f"{where}: cell {cell_id} already defined by blocks[{seen[cell_id]}]")
            seen[cell_id] = b
            cells.append(Cell(cell_id, config, overrides, runs / cell_id, int(spec.get("nproc", 1))))
    slurm_options(spec.get("slurm"), where=f"{path}: slurm")  # a bad option fails now, not at submission
    settings = {"name": spec.get("name", path.stem), "runs": runs, "nproc": int(spec.get("nproc", 1)),
                "notebook": spec.get("notebook", "notebooks/train.ipynb"), "slurm": spec.get("slurm"),
                "file": str(path)}
    return settings, cells


def status(cell: Cell, versions: CodeVersions | None = None, queue: dict | None = None) -> str:
    """'done' (skip), 'stale' (done, but by other code than the package's now for the cell's method and data
    set: :meth:`CodeVersions.is_current`; ``versions`` caches today's versions across calls),
    'changed' (parameters differ from the record), 'failed', 'new', or, while a process or SLURM job works on
    the cell, 'queued', 'running' or 'submitted' (SLURM job whose state the scheduler could not tell).
    ``queue`` holds SLURM job states already read (``queue_states``); without it the scheduler is asked. A run
    directory another live process writes (its lock, :func:`reprokit.engine.rundir.lock_holder`) is 'running'."""
    record = _read_json(cell.run_dir / CELL_RECORD)
    live = in_flight(record, submission(cell.run_dir), queue) or ("running" if lock_holder(cell.run_dir) else None)
    if live:
        return live
    return _recorded_state(cell, record, versions)


def _recorded_state(cell: Cell, record: dict | None, versions: CodeVersions | None = None) -> str:
    """What the files say of a cell nobody works on: 'done', 'stale', 'changed', 'failed' or 'new'."""
    if record is None:
        if (cell.run_dir / "config.yaml").is_file() and not _same_config(cell):
            return "changed"
        return "failed" if (cell.run_dir / SUBMITTED).is_file() else "new"
    if record.get("param_hash") != cell.param_hash():
        return "changed"
    if not (record.get("ok") and (cell.run_dir / "eval.json").is_file()):
        return "failed"
    return "done" if (versions or CodeVersions()).is_current(_meta(cell), _recorded_config(cell)) else "stale"


def in_flight(record: dict | None, submitted: dict | None, queue: dict | None = None) -> str | None:
    """'queued' / 'running' / 'submitted' while a live process or SLURM job owns the cell, else None."""
    if record is not None and record.get("state") != "running":
        return None  # finished (or written by an older reprokit): nothing owns the cell
    if record is not None and not record.get("job_id"):
        return "running" if record.get("host") == socket.gethostname() and _pid_alive(record.get("pid")) else None
    job = (record or {}).get("job_id") or (submitted or {}).get("job_id")
    if job is None:
        return None
    if (submitted or {}).get("cluster") == "local":  # submitit's local executor: the job id is a process id
        return ("running" if record else "queued") if _pid_alive(int(job)) else None
    queue = queue if queue is not None else queue_states({job})
    if queue is None:
        return "submitted"
    state = queue.get(job)
    if state is None:
        return None
    return "running" if state in ("RUNNING", "COMPLETING") else "queued"


def _pid_alive(pid) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat")
        return not (stat.is_file() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")
    except (OSError, IndexError):
        return False


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def sweep_states(cells: list[Cell]) -> dict[str, str]:
    """Every cell's state, asking the scheduler once for all cells that have SLURM jobs."""
    jobs = set()
    for cell in cells:
        record, submitted = _read_json(cell.run_dir / CELL_RECORD), submission(cell.run_dir)
        if (record is None or record.get("state") == "running") and (submitted or {}).get("cluster") == "slurm":
            jobs.add((record or {}).get("job_id") or submitted["job_id"])
    queue = queue_states(jobs) if jobs else {}
    versions = CodeVersions()
    return {cell.cell_id: status(cell, versions, queue) for cell in cells}


def _meta(cell: Cell) -> dict:
    path = cell.run_dir / "meta.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _recorded_config(cell: Cell) -> dict | None:
    """The configuration the cell's run recorded (partial certificates hold for some configurations only)."""
    path = cell.run_dir / "config.yaml"
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def _ran_commit(cell: Cell) -> str:
    git = _meta(cell).get("git") or {}
    return commit_label(git.get("commit"), git.get("dirty"))


def _same_config(cell: Cell) -> bool:
    from reprokit.configure import from_dict

    try:
        old = from_dict(yaml.safe_load((cell.run_dir / "config.yaml").read_text()))
        return old.hash() == load_config(cell.config, cell.overrides).hash()
    except ConfigError:
        return False


def move_aside(run_dir: Path) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    target = run_dir.with_name(f"{run_dir.name}{REPLACED_MARK}{stamp}")
    run_dir.rename(target)
    return target


_DEVICE: str | None = None


def _worker_init(slots, stagger: float) -> None:
    """Pin this worker to one device and stagger its first kernel start (papermill kernel start-up races)."""
    global _DEVICE
    slot, device = slots.get()
    _DEVICE = device
    if device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = device
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    signal.signal(signal.SIGTERM, _stop_worker)
    time.sleep(slot * stagger)


def _stop_worker(signum, frame):
    """SIGTERM from the sweep: end the cell's kernel and the training it started (a kernel leads a process group
    of its own), then this worker, so that no cell goes on training after its sweep."""
    for child in psutil.Process().children():
        try:
            os.killpg(child.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            child.terminate()
    os._exit(128 + signum)


def _job_id() -> str | None:
    env = os.environ
    if "SLURM_ARRAY_JOB_ID" in env:
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID")


def execute(cell: Cell, notebook: str, retries: int = 3, wait_for_writer: bool = False) -> dict:
    """Execute the train notebook for one cell as its run directory's one writer; never raises (the sweep must
    go on). Another process writing the directory (another sweep of the same file, a ``reprokit train``) means
    the cell is run elsewhere: it is reported so, or, with ``wait_for_writer``, waited for; a cell that process finished
    is not trained again. The cell's record says 'running' (with host, process and SLURM job) while it runs,
    and holds the outcome afterwards."""
    try:
        with run_dir_lock(cell.run_dir, what=f"sweep cell {cell.cell_id}", wait=wait_for_writer):
            if _recorded_state(cell, _read_json(cell.run_dir / CELL_RECORD)) == "done":
                return _elsewhere(cell, "finished by another process")
            return _execute(cell, notebook, retries)
    except RunDirLocked as exc:
        return _elsewhere(cell, str(exc))


def _elsewhere(cell: Cell, why: str) -> dict:
    return {"cell": cell.cell_id, "ok": True, "elsewhere": why, "seconds": 0.0, "error": None,
            "notebook": str(cell.run_dir / EXECUTED), "log": str(cell.run_dir / KERNEL_LOG), "device": _DEVICE}


def _execute(cell: Cell, notebook: str, retries: int) -> dict:
    out_nb = cell.run_dir / EXECUTED
    where = {"host": socket.gethostname(), "pid": os.getpid(), "job_id": _job_id()}
    bookkeeping = {"param_hash": cell.param_hash(), "parameters": cell.parameters()}
    write_json_atomic(cell.run_dir / CELL_RECORD, {"cell": cell.cell_id, "state": "running", "ok": False, **where,
                                              **bookkeeping})
    result = {"cell": cell.cell_id, "notebook": str(out_nb), "log": str(cell.run_dir / KERNEL_LOG),
              "device": _DEVICE, "ok": False, "error": None}
    # absolute: the notebook resolves relative paths against the project root, the cell's against ours
    parameters = {**cell.parameters(), "config": str(Path(cell.config).resolve()),
                  "run_dir": str(cell.run_dir.resolve())}
    start = time.perf_counter()
    for attempt in range(retries):
        try:
            execute_logged(notebook, out_nb, parameters, cell.run_dir / KERNEL_LOG, log_output=False,
                           start_timeout=120)
            result["ok"] = True
            break
        except Exception as exc:  # noqa: BLE001 - the sweep records every failure and goes on
            import papermill as pm

            if isinstance(exc, pm.PapermillExecutionError):  # the notebook itself failed: do not retry
                result["error"] = f"{exc.ename}: {exc.evalue}"[:2000]
                break
            result["error"] = f"{type(exc).__name__}: {exc}"[:2000]  # kernel start-up failures are retried
            time.sleep(2 * (attempt + 1))
    result["seconds"] = round(time.perf_counter() - start, 1)
    write_json_atomic(cell.run_dir / CELL_RECORD, {**result, "state": "finished", "job_id": where["job_id"],
                                                   "machine": machine_description(),
                                                   "allocator": allocator_name(with_allocator(dict(os.environ))),
                                                   "backbone": run_backbone(cell.run_dir), **bookkeeping})
    return result


def run_sweep(sweep_file: str | Path, jobs: int = 1, devices: list[str] | None = None, stagger: float = 3.0,
              log=print, rerun_stale: bool = False, executor: str = "local", slurm: list[str] = (),
              wait_for_jobs: bool = True, poll: float | None = None, cluster: str = "slurm",
              if_running: str = "skip") -> list[dict]:
    """Run every cell that is neither done nor in flight (stale cells too when ``rerun_stale``) with the
    local executor (``jobs`` processes) or as SLURM jobs; returns one result per executed cell (none for
    SLURM cells when not ``wait_for_jobs``). ``cluster`` is submitit's ("local" stands in for SLURM in tests).
    A cell another process on this machine is running is skipped (``if_running`` "skip"), or waited for and
    run afterwards unless that process finished it ("wait"; local executor)."""
    settings, cells = expand(sweep_file)
    with_allocator(dict(os.environ))  # a bad REPROKIT_ALLOCATOR stops the sweep here, before any cell starts
    if executor not in ("local", "slurm"):
        raise ConfigError(f"--executor: expected local or slurm (got {executor!r})")
    if if_running not in ("skip", "wait"):
        raise ConfigError(f"--if-running: expected skip or wait (got {if_running!r})")
    wait_local = if_running == "wait" and executor == "local"
    options = slurm_options(settings["slurm"], list(slurm), where=f"{settings['file']}: slurm") \
        if executor == "slurm" else None
    states = sweep_states(cells)
    todo, stale = [], []
    for cell in cells:
        state = states[cell.cell_id]
        if state == "done":
            log(f"skip   {cell.cell_id} (done, same parameters)")
            continue
        if state == "running" and wait_local and not _job_note(cell):
            log(f"wait   {cell.cell_id} (running elsewhere: run after it unless it finishes the cell)")
            todo.append(cell)
            continue
        if state in IN_FLIGHT:
            log(f"skip   {cell.cell_id} ({state}{_job_note(cell)})")
            continue
        if state == "stale" and not rerun_stale:
            log(f"skip   {cell.cell_id} (done, stale: ran code {_ran_commit(cell)})")
            stale.append(cell)
            continue
        if state == "stale":
            log(f"moved  {cell.cell_id}: ran code {_ran_commit(cell)}, old run kept at {move_aside(cell.run_dir)}")
        if state == "changed":
            log(f"moved  {cell.cell_id}: parameters changed, old run kept at {move_aside(cell.run_dir)}")
        todo.append(cell)
    how = f"{jobs} at a time" if executor == "local" else "as SLURM jobs"
    log(f"{settings['name']}: {len(cells)} cells, {len(todo)} to run, {how}")
    if stale:
        log(f"{len(stale)} cells ran other code than the current package's; rerun them with --rerun-stale")
    if not todo:
        return []
    display = SweepDisplay(settings["name"], {c.cell_id: c.run_dir for c in todo}, log)
    try:
        if executor == "local":
            results = _run_local(todo, settings, jobs, devices, stagger, display, poll or 2.0, wait_local)
        else:
            results = _run_slurm(todo, settings, options, display, wait_for_jobs, poll or 15.0, cluster)
    finally:
        display.close()
    _report_failures(results, log)
    return results


def _job_note(cell: Cell) -> str:
    record, submitted = _read_json(cell.run_dir / CELL_RECORD), submission(cell.run_dir)
    job = (record or {}).get("job_id") or (submitted or {}).get("job_id")
    return f", job {job}" if job else ""


def _run_local(todo, settings, jobs, devices, stagger, display, poll, wait_for_writer: bool) -> list[dict]:
    jobs = max(1, min(jobs, len(todo)))
    ctx = mp.get_context("spawn")
    slots = ctx.Manager().Queue()
    for i in range(jobs):
        slots.put((i, devices[i % len(devices)] if devices else None))
    results = []
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker_init, initargs=(slots, stagger)) as pool:
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: _stop_pool(pool, signum)) \
            if main_thread else None
        try:
            pending = {pool.submit(execute, cell, settings["notebook"], 3, wait_for_writer): cell for cell in todo}
            finished: dict[str, str] = {}
            while pending:
                done, _ = wait(pending, timeout=poll, return_when=FIRST_COMPLETED)
                for fut in done:
                    res = fut.result()
                    results.append(res)
                    finished[pending.pop(fut).cell_id] = "done" if res["ok"] else "failed"
                    if res.get("elsewhere"):
                        display.write(f"elsewhere {res['cell']}: {res['elsewhere']}")
                    else:
                        display.write(f"{'ok' if res['ok'] else 'FAILED':6s} {res['cell']} ({res['seconds']} s)")
                display.update({**{c.cell_id: _local_state(c) for c in pending.values()}, **finished})
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous)
    return results


def _stop_pool(pool: ProcessPoolExecutor, signum: int) -> None:
    """SIGTERM: queued cells are dropped and the workers stopped with their cells (:func:`_stop_worker`); the
    interrupted cells' records say 'running' with a process that is gone, so the next sweep resumes them."""
    workers = list(pool._processes.values())  # noqa: SLF001 - the executor exposes no other handle
    pool.shutdown(wait=False, cancel_futures=True)
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.join(30)
    raise SystemExit(128 + signum)


def _local_state(cell: Cell) -> str:
    return "running" if in_flight(_read_json(cell.run_dir / CELL_RECORD), None) == "running" else "queued"


def _run_slurm(todo, settings, options, display, wait_for_jobs, poll, cluster) -> list[dict]:
    for cell in todo:  # the previous attempt's outcome must not pass for this one's
        (cell.run_dir / CELL_RECORD).unlink(missing_ok=True)
    jobs = submit(todo, settings["notebook"], settings["runs"], settings["name"], options, execute, settings["nproc"],
                  cluster)
    display.write(f"submitted {len(jobs)} cells (jobs {jobs[0].job_id} ... {jobs[-1].job_id}); logs under "
                  f"{settings['runs'] / '.slurm'}")
    if not wait_for_jobs:
        display.write(f"not waiting: follow them with reprokit sweep {settings['file']} --status")
        return []
    reported: set[str] = set()
    while True:
        states = sweep_states(todo)
        display.update(states)
        for cell in todo:
            if states[cell.cell_id] not in IN_FLIGHT and cell.cell_id not in reported:
                reported.add(cell.cell_id)
                res = _outcome(cell)
                display.write(f"{'ok' if res['ok'] else 'FAILED':6s} {res['cell']} ({res.get('seconds', '?')} s)")
        if len(reported) == len(todo):
            return [_outcome(cell) for cell in todo]
        time.sleep(poll)


def _outcome(cell: Cell) -> dict:
    """The result of a cell's SLURM job, from its run directory; a job that left the queue without
    finishing (killed, out of memory, out of time without requeue) is a failure that names its log."""
    record, submitted = _read_json(cell.run_dir / CELL_RECORD), submission(cell.run_dir) or {}
    if record is not None and record.get("state") == "finished":
        return {**record, "job_log": submitted.get("log")}
    return {"cell": cell.cell_id, "ok": False, "notebook": str(cell.run_dir / EXECUTED), "seconds": None,
            "log": str(cell.run_dir / KERNEL_LOG), "job_log": submitted.get("log"),
            "error": f"job {submitted.get('job_id')} left the queue without finishing (cancelled, killed, out "
                     "of memory, or out of time without a requeue)"}


def _report_failures(results: list[dict], log) -> None:
    failed = [r for r in results if not r["ok"]]
    if not failed:
        return
    log(f"{len(failed)} cell(s) failed:")
    for r in failed:
        log(f"  {r['cell']}: {r['error'].splitlines()[0] if r['error'] else ''}\n    notebook: {r['notebook']}")
        for key, label in (("log", "kernel log"), ("job_log", "job log")):
            if r.get(key):
                log(f"    {label}: {r[key]}")


def sweep_report(sweep_file: str | Path) -> list[dict]:
    """One row per cell: its state and what explains it (job, step, mIoU, error), without running anything."""
    _, cells = expand(sweep_file)
    states = sweep_states(cells)
    return [{"cell": c.cell_id, "state": states[c.cell_id], "detail": _detail(c, states[c.cell_id])} for c in cells]


def _detail(cell: Cell, state: str) -> str:
    record = _read_json(cell.run_dir / CELL_RECORD) or {}
    job = _job_note(cell).lstrip(", ")
    if state in ("done", "stale"):
        ev = _read_json(cell.run_dir / "eval.json") or {}
        note = f"mIoU {100 * ev['miou']:.2f}" if "miou" in ev else ""
        return note + (f", ran code {_ran_commit(cell)}" if state == "stale" else "")
    if state == "running":
        progress = run_progress(cell.run_dir)
        step = f"step {progress[0]}/{progress[1]}" if progress else "starting"
        return ", ".join(p for p in (step, job) if p)
    if state == "failed":
        if record.get("state") == "finished":
            return f"{(record.get('error') or '').splitlines()[0]} (notebook {record.get('notebook')})"
        if submission(cell.run_dir) is not None:
            outcome = _outcome(cell)
            return f"{outcome['error']} (job log {outcome['job_log']})"
        return "interrupted: no process works on it any more (a rerun resumes it)"
    return job
