"""``reprokit figures``: rebuild every table and figure from run directories alone by executing the
artefact notebooks (papermill), and report the runs that are missing by config name."""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from reprokit.kernels import execute_logged
from reprokit.results import load_runs
from reprokit.viz.artefacts import PRESETS

NOTEBOOKS = ["summary", "tables_1_3", "table4", "table5", "fig6", "fig7", "fig8", "fig9"]


def needed_names(preset: str) -> dict[str, list[str]]:
    """Config names each artefact of ``preset`` reads."""
    p = PRESETS[preset]
    return {"summary": list(p["summary"]["rows"].values()), "table4": list(p["table4"]["rows"].values()), "table5": list(p["table5"]["rows"].values()),
            "fig6": list(p["fig6"]["groups"].values()), "fig7": list(p["fig7"]["runs"].values()),
            "fig8": list(p["fig8"].values()), "fig9": list(p["fig9"]["runs"].values())}


def missing_runs(runs_dir: str | Path, preset: str) -> dict[str, list[str]]:
    have = set(load_runs(runs_dir)["name"]) if Path(runs_dir).is_dir() and any(Path(runs_dir).rglob("eval.json")) \
        else set()
    return {art: [n for n in names if n not in have] for art, names in needed_names(preset).items()
            if any(n not in have for n in names)}


def regenerate(runs_dir: str | Path, out: str | Path, preset: str = "digits", jobs: int = 2,
               only: list[str] | None = None, notebooks_dir: str | Path = "notebooks", log=print) -> dict:
    """Execute the artefact notebooks; executed copies go to ``out/notebooks``. Returns
    {artefact: None or error}. Artefacts without any of their runs are skipped, partial ones still build."""
    # kernels inherit this: two kernels with a full set of OpenMP threads each on two cores spin against
    # each other (measured: 97 s instead of 6 s for Fig. 9 next to the t-SNE of Fig. 7)
    threads = str(max(1, (os.cpu_count() or 1) // max(1, jobs)))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, threads)
    out = Path(out)
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    missing = missing_runs(runs_dir, preset)
    needs = needed_names(preset)
    for art, names in missing.items():
        log(f"{art}: missing runs {', '.join(names)}")
    todo = [n for n in (only or NOTEBOOKS) if not (n in needs and len(missing.get(n, [])) == len(needs[n]))]
    skipped = sorted(set(only or NOTEBOOKS) - set(todo))
    if skipped:
        log(f"skipped (none of their runs exist): {', '.join(skipped)}")

    def run(name: str):
        start = time.perf_counter()
        try:
            execute_logged(Path(notebooks_dir) / f"{name}.ipynb", out / "notebooks" / f"{name}.ipynb",
                           {"runs": str(runs_dir), "out": str(out), "preset": preset},
                           out / "notebooks" / f"{name}.kernel.log", start_timeout=120)
            log(f"{name}: built in {time.perf_counter() - start:.1f} s")
            return None
        except Exception as exc:  # noqa: BLE001 - one artefact failing must not stop the others
            log(f"{name}: FAILED ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                f"kernel log {out / 'notebooks' / f'{name}.kernel.log'}")
            return f"{type(exc).__name__}: {exc}"

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        errors = dict(zip(todo, pool.map(run, todo)))
    return {**errors, **{s: "skipped: no runs" for s in skipped}}
