"""``reprokit figures``: rebuild the tables and figures of :data:`reprokit.viz.registry.ARTEFACTS` from run
directories (no training) by executing each artefact's notebook (papermill), and report the runs that are
missing by config name. The executed notebooks and their kernel logs are the record of each build."""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from reprokit.experiments.kernels import execute_logged
from reprokit.viz.artefacts import run_table
from reprokit.viz.registry import ARTEFACTS, select


def missing_runs(runs_dir: str | Path, preset: str) -> dict[str, list[str]]:
    """{artefact: config names it reads on ``preset`` without a finished run under ``runs_dir``}."""
    runs = run_table(runs_dir)
    have = set(runs["name"]) if len(runs) else set()
    return {a.name: missing for a in ARTEFACTS if (missing := [n for n in a.needs(preset) if n not in have])}


def longest_first(artefacts) -> list:
    """The artefacts that load networks first: they take longest (Fig. 7's t-SNE above all), and started
    first they do not leave one job slot working alone at the end."""
    return sorted(artefacts, key=lambda a: not a.loads_networks)


def regenerate(runs_dir: str | Path, out: str | Path, preset: str = "digits", jobs: int = 2,
               only: list[str] | None = None, notebooks_dir: str | Path = "notebooks", log=print,
               params: dict[str, dict] | None = None, expected: set[str] | None = None) -> dict:
    """Execute the notebooks of the artefacts ``only`` (default: all), ``jobs`` at a time; executed copies go
    to ``out/notebooks``. Returns {artefact: None or error}. Artefacts without any of their runs are skipped,
    partial ones still build. ``params`` gives artefacts' own notebook parameters ({artefact: {name: value}}).
    Missing runs are reported by config name; with ``expected`` (the config names the caller trains) only
    those, so rows a caller never meant to train do not read as failures."""
    chosen = select(only)
    # kernels inherit this: kernels that each start a full set of OpenMP threads oversubscribe the cores and
    # spin against each other (docs/measurements.md)
    threads = str(max(1, (os.cpu_count() or 1) // max(1, jobs)))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, threads)
    out = Path(out)
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    missing = missing_runs(runs_dir, preset)
    for a in chosen:
        reported = [n for n in missing.get(a.name, []) if expected is None or n in expected]
        if reported:
            log(f"{a.name}: missing runs {', '.join(reported)}")
    skipped = [a.name for a in chosen if a.needs(preset) and set(missing.get(a.name, [])) == set(a.needs(preset))]
    todo = longest_first(a for a in chosen if a.name not in skipped)
    if skipped:
        log(f"skipped (none of their runs exist): {', '.join(skipped)}")

    # absolute: the notebooks resolve relative paths against the project root, these are relative to ours
    parameters = {"runs": str(Path(runs_dir).resolve()), "out": str(out.resolve()), "preset": preset}

    def run(artefact) -> str | None:
        start = time.perf_counter()
        kernel_log = out / "notebooks" / f"{artefact.name}.kernel.log"
        try:
            execute_logged(Path(notebooks_dir) / artefact.notebook, out / "notebooks" / artefact.notebook,
                           {**parameters, **(params or {}).get(artefact.name, {})}, kernel_log,
                           start_timeout=120)
            log(f"{artefact.name}: built in {time.perf_counter() - start:.1f} s")
            return None
        except Exception as exc:  # noqa: BLE001 - one artefact failing must not stop the others
            log(f"{artefact.name}: FAILED ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                f"kernel log {kernel_log}")
            return f"{type(exc).__name__}: {exc}"

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        errors = dict(zip([a.name for a in todo], pool.map(run, todo)))
    return {**errors, **{s: "skipped: no runs" for s in skipped}}
