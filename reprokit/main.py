"""The README's main job on the embedded default: build the digit scenes and the glyph-pretrained backbone,
run the sweeps of its size through the train notebook (papermill, ``--jobs`` cells at a time), then rebuild its
tables and figures from the run directories.

    python -m reprokit.main [--size quick|full] [--jobs 2] [--out figures]

Finished cells are skipped, so a rerun only trains what is missing; an interrupted cell resumes from its
checkpoint. An artefact whose runs are all trained is built as soon as a job slot idles, while the last
cells still train, so the job's end is not a queue of artefacts on cores that trained nothing for minutes.
The quick size runs the frozen digits protocol with one seed and a shorter schedule (the summary, Table 4
and Figs. 6, 7 and 9); the full size is the benchmark measurement (5 seeds), the
ablations (3 seeds), Fig. 8 and CW-BASS and FARCLUSS (5 seeds, their component ablations 3), and rebuilds
every artefact.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from reprokit.data.digits import ensure_digit_scenes
from reprokit.engine.rundir import read_metrics
from reprokit.figures import longest_first, regenerate
from reprokit.machine import machine_description
from reprokit.runs.origin import machine_label
from reprokit.experiments.sweep import Cell, expand, run_sweep, sweep_states
from reprokit.viz.registry import NAMES, Artefact, select


@dataclass(frozen=True)
class MainJob:
    """One size of the main job: sweeps sharing one runs folder, the config whose backbone is pretrained
    before any cell starts, and the artefacts rebuilt from the runs (names of reprokit.viz.registry)."""

    sweeps: tuple[str, ...]
    pretrain: str
    artefacts: tuple[str, ...]
    params: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()  # artefacts' own notebook parameters

    @property
    def artefact_params(self) -> dict[str, dict]:
        return {name: dict(values) for name, values in self.params}

    def __post_init__(self):
        select(self.artefacts)  # a misspelt artefact fails here, not after the training


# under the output folder, untracked: artefacts built while cells still train (run_main_job)
BESIDE_TRAINING = ".beside-training"

SIZES = {
    # the quick summary shows the committed 5-seed measurement of the same rows beside its one short seed
    "quick": MainJob(("params/sweeps/quick.yaml",), "params/digits/base.yaml",
                     ("summary", "table4", "fig6", "fig7", "fig9"),
                     (("summary", (("reference", "docs/runs/benchmark"),)),)),
    "full": MainJob(("params/sweeps/benchmark.yaml", "params/sweeps/ablations.yaml", "params/sweeps/fig8.yaml",
                     "params/sweeps/new_methods.yaml"),
                    "params/digits/base.yaml", NAMES),
}


def peak_rss_mib() -> int:
    """Largest resident set of this process or any finished descendant (training kernels included)."""
    import resource

    kib = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return round(kib / 1024)


def pretrain_weights(config: str, threads: int) -> None:
    """Build (or find cached) the glyph-pretrained backbone every cell starts from, with all the job slots'
    threads, before the cells start: otherwise the first cell would build it with one thread while the
    others wait on its lock."""
    import torch

    from reprokit.configure import load_config
    from reprokit.models.pretrain import ensure_pretrained

    model_cfg = load_config(config).model
    if model_cfg.pretrained == "glyphs":
        previous = torch.get_num_threads()
        torch.set_num_threads(max(1, threads))
        try:
            ensure_pretrained(model_cfg)
        finally:
            torch.set_num_threads(previous)


def mean_step_seconds(run_dir: Path) -> float | None:
    """Mean logged seconds per training step of a run: how fast the host ran it. On one machine type the
    same cells' steps drift by up to a factor of two between days (docs/performance.md, "The main job"),
    so the job's wall time is read beside this."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    times = [r["sec_per_iter"] for r in read_metrics(path)[0] if isinstance(r.get("sec_per_iter"), (int, float))]
    return round(sum(times) / len(times), 4) if times else None


def cells_to_train(sweeps: tuple[str, ...]) -> list[Cell]:
    """The cells of ``sweeps`` that the job will train or wait for: all but those already done (and the
    stale ones, which the main job does not rerun; ``reprokit sweep --rerun-stale`` does)."""
    cells = [cell for sweep in sweeps for cell in expand(sweep)[1]]
    states = sweep_states(cells)
    return [c for c in cells if states[c.cell_id] not in ("done", "stale")]


def ready_artefact(waiting: list[Artefact], cells: list[Cell], names: dict[str, str], jobs: int, since: float,
                   preset: str = "digits") -> Artefact | None:
    """The first of ``waiting`` that can be built now beside the training of ``cells`` (the cells the job
    trains, which count as finished once they have ended at or after ``since``): a job slot idles (fewer
    cells unfinished than ``jobs``) and no unfinished cell trains a run it reads (``names``: cell id ->
    config name). Runs the job does not train are not waited for: the artefact builds without them, as it
    would after the training. None once every cell has finished: the sweeps are returning, and what is left
    is built after them, ``jobs`` at a time."""
    left = [c for c in cells if not c.finished(since)]
    if not 0 < len(left) < jobs:
        return None
    training = {names[c.cell_id] for c in left}
    return next((a for a in waiting if not training & set(a.needs(preset))), None)


def build_beside_training(training: Future, cells: list[Cell], names: dict[str, str], since: float, runs: str,
                          staging: Path, artefacts: tuple[str, ...], jobs: int, preset: str = "digits",
                          poll: float = 2.0, params: dict | None = None, expected: set[str] | None = None) -> dict:
    """While ``training`` (the sweeps) runs, build each artefact as soon as :func:`ready_artefact` allows,
    one at a time in the idle slot, longest first, into ``staging``. Returns {artefact: None or error} of those built."""
    waiting = longest_first(select(artefacts))
    built: dict = {}
    while waiting and not training.done():
        artefact = ready_artefact(waiting, cells, names, jobs, since, preset)
        if artefact is None:
            wait([training], timeout=poll)
            continue
        waiting.remove(artefact)
        built.update(regenerate(runs, staging, preset, jobs, [artefact.name], params=params, expected=expected))
    return built


def move_into(staging: Path, out: Path) -> None:
    """Move every file under ``staging`` to the same place under ``out`` (replacing what is there), then
    remove ``staging``."""
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        target = out / path.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        path.replace(target)
    shutil.rmtree(staging)


def run_main_job(size: str, out: Path, jobs: int = 2, data_root: str = "data/digits") -> dict:
    job = SIZES[size]
    start = time.perf_counter()
    ensure_digit_scenes(data_root)
    pretrain_weights(job.pretrain, jobs)
    pretrained = time.perf_counter()
    runs = expand(job.sweeps[0])[0]["runs"]  # a job's sweeps share one runs folder
    cells, since = cells_to_train(job.sweeps), time.time()
    names = {c.cell_id: c.config_name() for c in cells}  # a cell whose config does not load fails here, first
    # rows the job never trains (the quick size's references) are not reported as missing runs
    expected = {c.config_name() for sweep in job.sweeps for c in expand(sweep)[1]}
    # A training cell records whether git's tracked files differ from the commit when it ends: artefacts
    # built beside it go to an untracked folder first, or the cell would call itself "dirty".
    staging = out / BESIDE_TRAINING
    shutil.rmtree(staging, ignore_errors=True)
    with ThreadPoolExecutor(1) as pool:
        training = pool.submit(lambda: [r for sweep in job.sweeps for r in run_sweep(sweep, jobs)])
        errors = build_beside_training(training, cells, names, since, runs, staging, job.artefacts, jobs,
                                       params=job.artefact_params, expected=expected)
        results = training.result()
    trained = time.perf_counter()
    if staging.is_dir():
        move_into(staging, out)
    early = list(errors)
    rest = [a for a in job.artefacts if a not in errors]
    if rest:
        errors.update(regenerate(runs, out, "digits", jobs, rest, params=job.artefact_params, expected=expected))
    timing = {"size": size, "cells_run": len(results), "failed": [r["cell"] for r in results if not r["ok"]],
              "pretrain_seconds": round(pretrained - start, 1), "train_seconds": round(trained - pretrained, 1),
              "figures_seconds": round(time.perf_counter() - trained, 1), "built_beside_training": early,
              "total_seconds": round(time.perf_counter() - start, 1), "peak_rss_mib": peak_rss_mib(),
              "cells": {r["cell"]: {"seconds": r["seconds"],
                                    "sec_per_step": mean_step_seconds(Path(runs) / r["cell"])} for r in results}}
    timing["machine"] = machine_label(machine_description())
    (out / f"main_{size}.timing.json").write_text(json.dumps(timing, indent=2))
    print(f"main job ({size}) on {timing['machine']}: {timing['total_seconds']:.0f} s in all "
          f"({timing['pretrain_seconds']:.0f} s pretraining, {timing['train_seconds']:.0f} s training with "
          f"{len(early)} artefacts built beside it, "
          f"{timing['figures_seconds']:.0f} s figures after it), peak memory of one process "
          f"{timing['peak_rss_mib']} MiB; outputs in {out}")
    if size == "quick":
        print(f"quick numbers come from one seed of a short schedule and vary by processor; {out}/summary.md "
              "shows them beside the committed 5-seed measurement, which is the one to quote")
    if timing["failed"] or any(e and not e.startswith("skipped") for e in errors.values()):
        raise SystemExit(f"failed cells: {timing['failed']}; artefact errors: "
                         f"{[k for k, e in errors.items() if e and not e.startswith('skipped')]}")
    return timing


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="quick", choices=sorted(SIZES), help="how much to train (default: quick)")
    p.add_argument("--out", default="figures")
    p.add_argument("--jobs", type=int, default=2, help="cells trained at once (one CPU thread each)")
    p.add_argument("--data", default="data/digits")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run_main_job(args.size, Path(args.out), args.jobs, args.data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
