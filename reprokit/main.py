"""The README's main job on the embedded default: build the digit scenes, train and evaluate the runs
of a preset, and write a results table (Markdown + LaTeX) built from the run directories alone.

    python -m reprokit.main [--preset quick] [--runs runs/main] [--out figures]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from reprokit.config import load_config
from reprokit.data.digits import ensure_digit_scenes
from reprokit.engine.train import train
from reprokit.results import load_runs, summary_table

# (run name, params file, overrides) per preset
PRESETS = {
    "quick": [
        ("supervised-1_8", "params/digits/supervised.yaml", []),
        ("supervised-full", "params/digits/supervised.yaml", ["data.labeled_fraction=1.0"]),
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


def run_preset(preset: str, runs: Path, out: Path, root: str = "data/digits") -> Path:
    start = time.perf_counter()
    ensure_digit_scenes(root)
    for name, params, overrides in PRESETS[preset]:
        cfg = load_config(params, [f"name={name}", f"data.root={root}", *overrides])
        summary = train(cfg, runs / name)
        print(f"{name}: mIoU {100 * summary['miou']:.2f}", flush=True)
    df = load_runs(runs)
    stem = out / f"main_{preset}"
    write_table(summary_table(df, ["name", "method", "labeled_count"]), stem,
                f"Embedded digit scenes, preset '{preset}' (from {runs}); wall time "
                f"{time.perf_counter() - start:.0f} s")
    print(f"wrote {stem.with_suffix('.md')} and .tex")
    return stem


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="quick", choices=sorted(PRESETS))
    p.add_argument("--runs", default="runs/main")
    p.add_argument("--out", default="figures")
    p.add_argument("--data", default="data/digits")
    args = p.parse_args(argv)
    run_preset(args.preset, Path(args.runs), Path(args.out), args.data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
