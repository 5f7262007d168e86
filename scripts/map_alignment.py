"""Where a trained run's maps sit relative to the objects they should cover, on the val split.

    python scripts/map_alignment.py RUN_DIR [--images 300]          # the eval network's predicted regions
    python scripts/map_alignment.py RUN_DIR --cam [--images 300]    # the CAM classifier's thresholded CAMs

For every (image, class present in the ground truth) it compares the centroid of the predicted region (or of
the thresholded CAM of the true class, weighted by the CAM) with the centroid of the ground-truth region and
prints the mean offset in pixels (+x right, +y down). With ``--cam`` it also scans whole-pixel shifts of the
CAMs and prints the foreground IoU of the thresholded CAM at each, so a systematic misplacement shows as a
best shift away from zero. Why this exists: a network whose feature cell o covers input pixel 8o, upsampled
as if it covered 8o + 3.5 (bilinear, align_corners=False), places everything 3.5 px right and down, and only
a dense loss can teach the decoder to undo it (docs/weak-supervision.md, "Where the CAMs sit").
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def centroid(weight: torch.Tensor) -> tuple[float, float]:
    """(x, y) centre of mass of a non-negative [H, W] map."""
    ys, xs = torch.meshgrid(torch.arange(weight.shape[0], dtype=weight.dtype),
                            torch.arange(weight.shape[1], dtype=weight.dtype), indexing="ij")
    total = weight.sum()
    return float((weight * xs).sum() / total), float((weight * ys).sum() / total)


def offset(weight: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """(dx, dy) from the ground-truth region's centroid to the weighted map's; both must be non-empty."""
    (wx, wy), (tx, ty) = centroid(weight.float()), centroid(truth.float())
    return wx - tx, wy - ty


def shifted(binary: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """``binary`` moved by (dx, dy) pixels, vacated pixels False (no wrap-around)."""
    out = torch.zeros_like(binary)
    h, w = binary.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        binary[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--cam", action="store_true", help="the CAM classifier's maps (methods cam and cosa)")
    parser.add_argument("--max-shift", type=int, default=8)
    args = parser.parse_args(argv)

    from reprokit.data.datasets import SegDataset, resolve_splits
    from reprokit.engine.reeval import load_trained_method
    from reprokit.methods.cam import dense_cams

    torch.set_num_threads(1)
    cfg, method = load_trained_method(args.run)
    method.eval()
    cosa = hasattr(method, "online")  # CoSA's online network, else the CAM baseline's classifier
    net = method.online if cosa else method.net
    threshold = method.params.high if cosa else method.params.threshold
    data = SegDataset(resolve_splits(cfg.data).val, cfg.data, train=False)
    shifts = [(dx, dy) for dx in range(-args.max_shift, args.max_shift + 1, 2)
              for dy in range(-args.max_shift, args.max_shift + 1, 2)]
    offsets, inter, union = [], dict.fromkeys(shifts, 0), dict.fromkeys(shifts, 0)
    with torch.no_grad():
        for i in range(min(args.images, len(data))):
            sample = data[i]
            truth_mask, image = sample["mask"], sample["image"][None]
            if args.cam:
                out = net(image, heads=True) if cosa else net(image)
                maps = dense_cams(out["cam"], image.shape[-2:], net.grids["cam"])[0]
                weight_of = {c: maps[c - 1] * (maps[c - 1] > threshold)
                             for c in range(1, cfg.data.num_classes)}
            else:
                pred = method.eval_network()(image).argmax(1)[0]
                weight_of = {c: (pred == c).float() for c in range(1, cfg.data.num_classes)}
            for c, weight in weight_of.items():
                truth = truth_mask == c
                if not truth.any() or not weight.any():
                    continue
                offsets.append(offset(weight, truth))
                for dx, dy in shifts if args.cam else ():
                    moved = shifted(weight > 0, dx, dy)
                    inter[dx, dy] += int((moved & truth).sum())
                    union[dx, dy] += int((moved | truth).sum())
    dx, dy = torch.tensor(offsets).T
    report = {"run": args.run.name, "maps": "cam" if args.cam else "prediction", "objects": len(offsets),
              "mean_offset_px": {"x": round(float(dx.mean()), 2), "y": round(float(dy.mean()), 2)},
              "median_offset_px": {"x": round(float(dx.median()), 2), "y": round(float(dy.median()), 2)}}
    if args.cam:
        iou = {k: inter[k] / max(1, union[k]) for k in shifts}
        best = max(iou, key=iou.get)
        report["fg_iou_unshifted"] = round(iou[0, 0], 4)
        report["best_shift_px"] = {"x": best[0], "y": best[1], "fg_iou": round(iou[best], 4)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
