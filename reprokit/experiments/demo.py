"""Demo runs: short trainings that give the notebooks which load networks (the pseudo-label inspector,
Figs. 7 and 9, the weak-label figure) a checkpoint to open on a fresh checkout, where the committed records
(docs/runs) hold no checkpoints and ``make main`` (runs/quick) has not run yet.

They train the benchmark's own parameter files for 100-150 of its 4000 steps, under the config names the
artefacts look for, into ``runs/demo``: enough to show how each view works, not to compare methods (their
mIoU is far below the benchmark's). These notebooks build the runs they need when their default folder lacks
them; ``python -m reprokit.experiments.demo`` builds all of them at once (about 2 minutes on 2 CPU cores).
"""
from __future__ import annotations

import argparse
import time
from contextlib import contextmanager
from pathlib import Path

from reprokit.experiments.project import Project, ProjectPathError, find_project

FOLDER = "runs/demo"
SEED_SUFFIX = "-s0"
# {config name: (parameter file, training steps)}; the STPG run keeps a snapshot halfway for the inspector's
# checkpoint selector
RUNS = {
    "digits-table4-ls": ("params/digits/table4/ls.yaml", 150),
    "digits-table4-stpg": ("params/digits/table4/stpg.yaml", 100),
    "digits-weak-partial_ce-points": ("params/digits/weak/partial_ce_points.yaml", 100),
    "digits-weak-agmm-points": ("params/digits/weak/agmm_points.yaml", 100),
}
# the demo runs each notebook reads
NEEDS = {
    "fig7": ("digits-table4-ls", "digits-table4-stpg"),
    "fig9": ("digits-table4-ls", "digits-table4-stpg"),
    "fig_weak": ("digits-weak-partial_ce-points", "digits-weak-agmm-points"),
    "inspect_pseudo_labels": ("digits-table4-stpg",),
}


def run_dir(project: Project, name: str) -> Path:
    return project.resolve(FOLDER) / f"{name}{SEED_SUFFIX}"


def overrides(steps: int) -> list[str]:
    return [f"train.iters={steps}", f"train.ckpt_every={steps}", f"train.log_every={steps // 2}",
            f"train.snapshot_every={steps // 2}"]


def is_built(folder: Path) -> bool:
    return (folder / "eval.json").is_file() and (folder / "checkpoint.pt").is_file()


@contextmanager
def _locked(folder: Path):
    """One builder at a time: two notebooks opened together must not train the same run directory."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure(project: Project, names=None, log=print) -> list[Path]:
    """Train the demo runs ``names`` (default: all) that are not built yet; returns their run directories."""
    from reprokit.experiments.notebook import train_in_subprocess

    names = list(names or RUNS)
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        raise ValueError(f"no demo run {', '.join(unknown)}; demo runs are {', '.join(RUNS)}")
    with _locked(project.resolve(FOLDER)):
        for name in names:
            folder = run_dir(project, name)
            if is_built(folder):
                continue
            config, steps = RUNS[name]
            log(f"building the demo run {folder.relative_to(project.root)} ({steps} steps of {config}) ...")
            start = time.perf_counter()
            train_in_subprocess(config, overrides(steps), str(folder), cwd=project.root)
            log(f"built {folder.relative_to(project.root)} in {time.perf_counter() - start:.0f} s")
    return [run_dir(project, n) for n in names]


def runs_folder(project: Project, name: str, value: str, notebook: str) -> Path:
    """The runs folder parameter ``name`` = ``value`` of ``notebook``, resolved; the demo folder gets the demo
    runs the notebook reads built first."""
    if project.resolve(value) == project.resolve(FOLDER):
        ensure(project, NEEDS.get(notebook, ()))
        print(f"{name} = {value!r}: demo runs (a few hundred steps, not results); after `make main`, "
              f"{name} = 'runs/quick' shows the quick job's runs")
    return project.path(name, value, expect="dir")


def run_directory(project: Project, name: str, value: str) -> Path:
    """A run directory parameter that must hold a checkpoint; a demo run is built first when it is one."""
    demo = {run_dir(project, n): n for n in RUNS}
    full = project.resolve(value)
    if full in demo:
        ensure(project, [demo[full]])
        print(f"{name} = {value!r}: a demo run ({RUNS[demo[full]][1]} steps of {RUNS[demo[full]][0]}), built by "
              "python -m reprokit.experiments.demo")
    path = project.path(name, value, expect="dir")
    if not (full / "checkpoint.pt").is_file():
        raise ProjectPathError(f"{name} = {value!r} resolved to {full}, which holds no checkpoint.pt; expected a "
                               f"run directory with its checkpoint (committed records under docs/runs have none: "
                               f"use {FOLDER}/digits-table4-stpg{SEED_SUFFIX}, or runs/quick/... after make main) "
                               f"({project.where()})")
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", metavar="NAME", help=f"demo runs to build (default: all): {', '.join(RUNS)}")
    names = p.parse_args(argv).names
    project = find_project()
    start = time.perf_counter()
    for folder in ensure(project, names or None):
        print(folder)
    print(f"demo runs ready in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
