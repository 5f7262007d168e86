"""A CAM baseline's seed over its background threshold, on one and the same classifier.

    python scripts/cam_seed_thresholds.py RUN_DIR [RUN_DIR ...] [--thresholds 0.3 0.4 ...]

The background score that the CAM baseline thresholds its normalised CAMs against (``method.threshold``) is
the classic free parameter of CAM pseudo-masks; weakly supervised pipelines set it by scoring the masks of the
training images against their true masks. The classifier of stage 1 does not depend on it, so one checkpoint
gives the seed (``reprokit.runs.cam_seed``) at every threshold: this prints, per run and threshold, the seed's
pixel accuracy and foreground IoU beside all-background's accuracy. Nothing is written to the run.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from reprokit.methods.cam import CAMBaseline
from reprokit.runs.cam_seed import load_cam_method, score_cam_seed


def seed_by_threshold(run_dir: Path, thresholds) -> dict:
    """{threshold: scores} of the run's CAM seed, its band (method.low / high) cleared to the one threshold."""
    cfg, method = load_cam_method(run_dir)
    if not isinstance(method, CAMBaseline):
        raise SystemExit(f"{run_dir}: not a CAM baseline run (method {cfg.method.name!r}); only the two-stage "
                         "baseline thresholds a classifier that the threshold does not train")
    scores = {}
    for t in thresholds:
        method.params = replace(method.params, threshold=t, low=None, high=None)
        scores[t] = score_cam_seed(cfg, method)
    return scores


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--thresholds", nargs="+", type=float, default=[0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    args = parser.parse_args(argv)
    print("| run | threshold | accuracy | fg IoU | all-background |")
    print("|---|---|---|---|---|")
    for run in args.runs:
        for t, s in seed_by_threshold(run, args.thresholds).items():
            print(f"| {run.name} | {t:.2f} | {s['accuracy']:.3f} | {s['fg_iou']:.3f} | "
                  f"{s['all_background']['accuracy']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
