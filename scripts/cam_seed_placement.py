"""What placing the CAMs by their cells' centres does to a CAM baseline's seed, on one and the same classifier.

    python scripts/cam_seed_placement.py RUN_DIR [RUN_DIR ...]

The CAM baseline's classifier learns from pooled image scores, so where its CAMs are drawn on the pixels does
not change its training: only the pseudo-masks made from them move. For each finished CAM-baseline run this
scores the CAM seed (``reprokit.runs.cam_seed``) twice on the same checkpoint, with the CAMs resampled by their
grid (each cell at ``stride * o``, as the package does) and by the convention of bilinear upsampling with
``align_corners=False`` (each cell at ``stride * o + (stride - 1) / 2``, as the package did), and prints the
pixel accuracy and foreground IoU of both beside all-background's accuracy. Nothing is written to the run.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from reprokit.methods.cam import CAMBaseline
from reprokit.models.cells import CellGrid
from reprokit.runs.cam_seed import load_cam_method, score_cam_seed


def placements(run_dir: Path) -> dict:
    """{"grid": scores, "align_corners=False": scores} of the run's CAM seed."""
    cfg, method = load_cam_method(run_dir)
    if not isinstance(method, CAMBaseline):
        raise SystemExit(f"{run_dir}: not a CAM baseline run (method {cfg.method.name!r}); its classifier's "
                         "training would depend on the placement")
    grid = method.net.grids["cam"]
    scores = {"grid": score_cam_seed(cfg, method)}
    method.net.grids["cam"] = CellGrid.patches(grid.stride)  # the upsampling convention's cell centres
    scores["align_corners=False"] = score_cam_seed(cfg, method)
    return scores


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    print("| run | accuracy: grid / align_corners=False | fg IoU: grid / align_corners=False | all-background |")
    print("|---|---|---|---|")
    for run in args.runs:
        s = placements(run)
        grid, old = s["grid"], s["align_corners=False"]
        print(f"| {run.name} | {grid['accuracy']:.3f} / {old['accuracy']:.3f} | {grid['fg_iou']:.3f} / "
              f"{old['fg_iou']:.3f} | {grid['all_background']['accuracy']:.3f} |")


if __name__ == "__main__":
    main()
