"""The README's main job on the embedded default: build the digit scenes, run a preset's sweep through the
train notebook (papermill, ``--jobs`` cells at a time), then rebuild the tables and figures from the run
directories alone.

    python -m reprokit.main [--preset quick|full] [--jobs 2] [--out figures]

Finished cells are skipped, so a rerun only trains what is missing; an interrupted cell resumes from its
checkpoint. The quick preset backs small-scale versions of Tables 4-5 and Figs. 6, 7 and 9.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from reprokit.data.digits import ensure_digit_scenes
from reprokit.figures import NOTEBOOKS, regenerate
from reprokit.sweep import expand, run_sweep

PRESETS = {
    "quick": {"sweep": "params/sweeps/quick.yaml",
              "artefacts": ["summary", "table4", "table5", "fig6", "fig7", "fig9"]},
    "full": {"sweep": "params/sweeps/full.yaml", "artefacts": NOTEBOOKS},
}


def run_preset(preset: str, out: Path, jobs: int = 2, data_root: str = "data/digits") -> dict:
    spec = PRESETS[preset]
    start = time.perf_counter()
    ensure_digit_scenes(data_root)
    results = run_sweep(spec["sweep"], jobs)
    trained = time.perf_counter()
    runs = expand(spec["sweep"])[0]["runs"]
    errors = regenerate(runs, out, "digits", jobs, spec["artefacts"])
    timing = {"preset": preset, "cells_run": len(results), "failed": [r["cell"] for r in results if not r["ok"]],
              "train_seconds": round(trained - start, 1), "figures_seconds": round(time.perf_counter() - trained, 1),
              "total_seconds": round(time.perf_counter() - start, 1)}
    (out / f"main_{preset}.timing.json").write_text(json.dumps(timing, indent=2))
    print(f"main job ({preset}): {timing['total_seconds']:.0f} s in all ({timing['train_seconds']:.0f} s training, "
          f"{timing['figures_seconds']:.0f} s figures); outputs in {out}")
    if timing["failed"] or any(e and not e.startswith("skipped") for e in errors.values()):
        raise SystemExit(f"failed cells: {timing['failed']}; artefact errors: "
                         f"{[k for k, e in errors.items() if e and not e.startswith('skipped')]}")
    return timing


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="quick", choices=sorted(PRESETS))
    p.add_argument("--out", default="figures")
    p.add_argument("--jobs", type=int, default=2, help="cells trained at once (one CPU thread each)")
    p.add_argument("--data", default="data/digits")
    args = p.parse_args(argv)
    run_preset(args.preset, Path(args.out), args.jobs, args.data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
