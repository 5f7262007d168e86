"""Batch execution: expand a sweep file into cells (configs x seeds x hyper-parameter grid) and execute the
train notebook once per cell through papermill, keeping the executed notebook in the cell's run directory.

    reprokit sweep params/sweeps/quick.yaml [--jobs N] [--devices 0,1] [--rerun-stale]

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

By default every seed trains on the same labeled split (``data.split_seed`` of the config), so seeds vary the
initialisation and data order only; ``split_per_seed: true`` makes the seed also pick the labeled subset, so
the spread over seeds includes split-to-split variance, as in papers that average over random splits.

A cell whose record (``sweep-cell.json``) shows the same parameter hash and success is skipped. A failed
cell is rerun (training resumes from its checkpoint); a changed cell's old directory is moved aside, not
deleted. A finished cell whose run ran other code than the current package (its code version differs, or
is unknown) is reported as stale, never passed off as current; ``--rerun-stale`` moves such cells aside
and reruns them. One failing cell never stops the others; failures are listed with their notebook's path.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from reprokit.config import ConfigError, apply_overrides, config_digest, load_config, read_yaml
from reprokit.engine.rundir import code_version, commit_label, recorded_code_version

RECORD = "sweep-cell.json"
EXECUTED = "train.ipynb"


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


def _slug(key: str, value) -> str:
    return f"{key.split('.')[-1]}{value}".replace("/", "_").replace(" ", "")


def expand(sweep_file: str | Path) -> tuple[dict, list[Cell]]:
    """Read a sweep file; returns its settings and the cells in order. Errors name the file and block."""
    path = Path(sweep_file)
    if not path.is_file():
        raise ConfigError(f"sweep file not found: {path}")
    spec = yaml.safe_load(path.read_text()) or {}
    unknown = set(spec) - {"name", "runs", "notebook", "set", "blocks", "nproc", "split_per_seed"}
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
    settings = {"name": spec.get("name", path.stem), "runs": runs,
                "notebook": spec.get("notebook", "notebooks/train.ipynb")}
    return settings, cells


def status(cell: Cell, current_code: str | None = None) -> str:
    """'done' (skip), 'stale' (done, but by other code than ``current_code``, default the package's now),
    'changed' (parameters differ from the record), 'failed', or 'new'."""
    record = cell.run_dir / RECORD
    if not record.is_file():
        return "changed" if (cell.run_dir / "config.yaml").is_file() and not _same_config(cell) else "new"
    rec = json.loads(record.read_text())
    if rec.get("param_hash") != cell.param_hash() and not _same_run(cell, rec):
        return "changed"
    if not (rec.get("ok") and (cell.run_dir / "eval.json").is_file()):
        return "failed"
    ran = recorded_code_version(_meta(cell))
    return "done" if ran is not None and ran == (current_code or code_version()) else "stale"


def _meta(cell: Cell) -> dict:
    path = cell.run_dir / "meta.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _ran_commit(cell: Cell) -> str:
    git = _meta(cell).get("git") or {}
    return commit_label(git.get("commit"), git.get("dirty"))


def _same_run(cell: Cell, record: dict) -> bool:
    """A record whose hash was computed another way (an older reprokit hashed differently) still stands
    when its run trained exactly the configuration the cell asks for, with as many processes."""
    ran = record.get("parameters", {})
    return ran.get("nproc", 1) == cell.parameters()["nproc"] and (cell.run_dir / "config.yaml").is_file() \
        and _same_config(cell)


def _same_config(cell: Cell) -> bool:
    from reprokit.config import from_dict

    try:
        old = from_dict(yaml.safe_load((cell.run_dir / "config.yaml").read_text()))
        return old.hash() == load_config(cell.config, cell.overrides).hash()
    except ConfigError:
        return False


def move_aside(run_dir: Path) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    target = run_dir.with_name(f"{run_dir.name}.replaced-{stamp}")
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
    time.sleep(slot * stagger)


def execute(cell: Cell, notebook: str, retries: int = 3) -> dict:
    """Execute the train notebook for one cell; never raises (the sweep must go on)."""
    import papermill as pm

    cell.run_dir.mkdir(parents=True, exist_ok=True)
    out_nb = cell.run_dir / EXECUTED
    result = {"cell": cell.cell_id, "notebook": str(out_nb), "device": _DEVICE, "ok": False, "error": None}
    start = time.perf_counter()
    for attempt in range(retries):
        try:
            pm.execute_notebook(notebook, str(out_nb), parameters=cell.parameters(), kernel_name="python3",
                                progress_bar=False, log_output=False, start_timeout=120)
            result["ok"] = True
            break
        except pm.PapermillExecutionError as exc:  # the notebook itself failed: record, do not retry
            result["error"] = f"{exc.ename}: {exc.evalue}"[:2000]
            break
        except Exception as exc:  # noqa: BLE001 - kernel start-up failures are retried
            result["error"] = f"{type(exc).__name__}: {exc}"[:2000]
            time.sleep(2 * (attempt + 1))
    result["seconds"] = round(time.perf_counter() - start, 1)
    (cell.run_dir / RECORD).write_text(json.dumps({**result, "param_hash": cell.param_hash(),
                                                   "parameters": cell.parameters()}, indent=2))
    return result


def run_sweep(sweep_file: str | Path, jobs: int = 1, devices: list[str] | None = None, stagger: float = 3.0,
              log=print, rerun_stale: bool = False) -> list[dict]:
    """Run every cell that is not done (stale cells too when ``rerun_stale``); returns one result per
    executed cell."""
    settings, cells = expand(sweep_file)
    current = code_version()
    todo, stale = [], []
    for cell in cells:
        state = status(cell, current)
        if state == "done":
            log(f"skip   {cell.cell_id} (done, same parameters)")
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
    log(f"{settings['name']}: {len(cells)} cells, {len(todo)} to run, {jobs} at a time")
    if stale:
        log(f"{len(stale)} cells ran older code (not code version {current}); rerun them with --rerun-stale")
    if not todo:
        return []
    jobs = max(1, min(jobs, len(todo)))
    ctx = mp.get_context("spawn")
    slots = ctx.Manager().Queue()
    for i in range(jobs):
        slots.put((i, devices[i % len(devices)] if devices else None))
    results = []
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker_init, initargs=(slots, stagger)) as pool:
        futures = [pool.submit(execute, cell, settings["notebook"]) for cell in todo]
        for fut in futures:
            res = fut.result()
            results.append(res)
            log(f"{'ok' if res['ok'] else 'FAILED':6s} {res['cell']} ({res['seconds']} s)")
    failed = [r for r in results if not r["ok"]]
    if failed:
        log(f"{len(failed)} cell(s) failed:")
        for r in failed:
            log(f"  {r['cell']}: {r['error'].splitlines()[0] if r['error'] else ''}\n    notebook: {r['notebook']}")
    return results
