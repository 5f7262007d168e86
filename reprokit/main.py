"""The README's main job on the embedded default: build the digit scenes, train and evaluate the runs
of a preset (``--jobs`` at a time, one single-threaded process each), and write a results table
(Markdown + LaTeX) built from the run directories alone.

    python -m reprokit.main [--preset quick] [--runs runs/main] [--out figures] [--jobs 2]

Runs already finished are skipped (their directory holds eval.json), so a rerun only trains what is
missing, and an interrupted run resumes from its checkpoint.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from reprokit.data.digits import ensure_digit_scenes
from reprokit.results import load_runs, summary_table

# (run name, params file, overrides) per preset. All labels need twice the steps of 1/8 to fit (eight
# times the images); the 1/8 runs share one schedule, on which supervised training has converged.
PRESETS = {
    "quick": [
        ("supervised-full", "params/digits/supervised.yaml", ["data.labeled_fraction=1.0", "train.iters=6000"]),
        ("stpg-1_8", "params/digits/stpg.yaml", []),
        ("fixmatch-1_8", "params/digits/fixmatch.yaml", []),
        ("mean_teacher-1_8", "params/digits/mean_teacher.yaml", []),
        ("supervised-1_8", "params/digits/supervised.yaml", []),
    ],
}


def markdown_table(df) -> str:
    """A GitHub-flavoured Markdown table (no extra dependency)."""
    cols = [str(c) for c in df.columns]
    rows = [[("" if v is None else str(v)) for v in row] for row in df.itertuples(index=False)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def write_table(df, path_stem: Path, caption: str) -> None:
    """Markdown and LaTeX (booktabs) versions of a summary table."""
    table = df.copy()
    table["mIoU (%)"] = [f"{100 * m:.2f}" + (f" ± {100 * s:.2f}" if s == s else "") for m, s in
                         zip(table["mean"], table["std"])]
    table = table.drop(columns=["mean", "std"])
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    path_stem.with_suffix(".md").write_text(f"{caption}\n\n" + markdown_table(table))
    path_stem.with_suffix(".tex").write_text(table.to_latex(index=False, caption=caption, escape=True))


def train_command(name: str, params: str, overrides: list[str], runs: Path, root: str) -> list[str]:
    sets = [f"name={name}", f"data.root={root}", "train.threads=1", *overrides]
    return [sys.executable, "-m", "reprokit.cli", "train", "--config", params, "--out", str(runs / name),
            *[arg for s in sets for arg in ("--set", s)]]


def run_all(commands: dict[str, list[str]], jobs: int, logs: Path) -> list[str]:
    """Run the commands ``jobs`` at a time (longest first, as listed); returns the names that failed."""
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "REPROKIT_PROGRESS": "0"}
    pending, running, failed = list(commands.items()), {}, []
    while pending or running:
        while pending and len(running) < jobs:
            name, cmd = pending.pop(0)
            log = open(logs / f"{name}.log", "w")
            running[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
        time.sleep(0.5)
        for name, (proc, log) in list(running.items()):
            if proc.poll() is not None:
                log.close()
                del running[name]
                print(f"{name}: {'done' if proc.returncode == 0 else f'FAILED, see {logs / name}.log'}", flush=True)
                if proc.returncode:
                    failed.append(name)
    return failed


def run_preset(preset: str, runs: Path, out: Path, root: str = "data/digits", jobs: int = 2) -> Path:
    start = time.perf_counter()
    ensure_digit_scenes(root)
    todo = {name: train_command(name, params, overrides, runs, root) for name, params, overrides in PRESETS[preset]
            if not (runs / name / "eval.json").is_file()}
    failed = run_all(todo, jobs, runs / "logs")
    df = load_runs(runs)
    stem = out / f"main_{preset}"
    write_table(summary_table(df, ["name", "method", "labeled_count"]), stem,
                f"Embedded digit scenes, preset '{preset}' (from {runs}); wall time "
                f"{time.perf_counter() - start:.0f} s")
    print(f"wrote {stem.with_suffix('.md')} and .tex")
    if failed:
        raise SystemExit(f"{len(failed)} run(s) failed: {', '.join(failed)} (logs in {runs / 'logs'})")
    return stem


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="quick", choices=sorted(PRESETS))
    p.add_argument("--runs", default="runs/main")
    p.add_argument("--out", default="figures")
    p.add_argument("--data", default="data/digits")
    p.add_argument("--jobs", type=int, default=2, help="runs trained at once (one CPU thread each)")
    args = p.parse_args(argv)
    run_preset(args.preset, Path(args.runs), Path(args.out), args.data, args.jobs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
