"""The CAM seed as an instrument: how good are the CAM pseudo-masks an image-label method trains on?

For a finished run of an image-label method (its final checkpoint), every image of its weakly labeled training
set gets the method's CAM pseudo-mask, made as in training from the image's true classes (the CAM baseline's
frozen-classifier masks, CoSA's assignment-network CPL with its last thresholds), and is scored against the
image's hidden dense mask, which training never reads:

- ``coverage``: share of valid pixels the mask decides (the rest is its ignore band);
- ``accuracy``: pixel accuracy on the decided pixels; ``fg_iou``: IoU of foreground (any class but
  background) with the true foreground over the valid pixels, undecided pixels counted as not foreground;
- ``all_background``: the same scores of the mask that says background everywhere it decides, the seed's
  trivial rival (``accuracy`` on the same decided pixels, ``accuracy_all`` on every valid pixel).

A seed that loses to all-background in pixel accuracy teaches the segmentation network less than predicting
background would: :func:`check_admissible` makes that the admission rule of an image-label protocol, on the
CAM baseline's runs, like the oracle's headroom check of the semi-supervised benchmark.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from reprokit.engine.rundir import RunDirError
from reprokit.methods.cam import CAMBaseline
from reprokit.records import write_json_atomic

SEED_FILE = "cam_seed.json"


def seed_counts(seed: torch.Tensor, truth: torch.Tensor, valid: torch.Tensor, ignore: int) -> dict:
    """Pixel counts of pseudo-masks ``seed`` [B, H, W] (``ignore``: undecided) against true masks ``truth``
    (``ignore``: unknown) on ``valid`` pixels."""
    known = valid & (truth != ignore)
    decided = known & (seed != ignore)
    seed_fg, true_fg = decided & (seed != 0), known & (truth != 0)
    return {"valid": int(known.sum()), "decided": int(decided.sum()),
            "correct": int((decided & (seed == truth)).sum()),
            "background_decided": int((decided & (truth == 0)).sum()),
            "background": int((known & (truth == 0)).sum()),
            "fg_intersection": int((seed_fg & true_fg).sum()), "fg_union": int((seed_fg | true_fg).sum())}


def seed_scores(counts: dict) -> dict:
    """The scores of the module docstring from summed :func:`seed_counts`."""
    def share(a, b):
        return a / b if b else float("nan")
    return {"coverage": share(counts["decided"], counts["valid"]),
            "accuracy": share(counts["correct"], counts["decided"]),
            "fg_iou": share(counts["fg_intersection"], counts["fg_union"]),
            "all_background": {"accuracy": share(counts["background_decided"], counts["decided"]),
                               "accuracy_all": share(counts["background"], counts["valid"]), "fg_iou": 0.0}}


def measure_cam_seed(run_dir: str | Path, batch_size: int = 32) -> dict:
    """Scores of a run's CAM seed on its weakly labeled training images, written to ``<run>/cam_seed.json``."""
    run_dir = Path(run_dir)
    result = {"run_id": run_dir.name, **score_cam_seed(*load_cam_method(run_dir), batch_size)}
    write_json_atomic(run_dir / SEED_FILE, result)
    return result


def load_cam_method(run_dir: Path):
    """(config, method) of a finished run of an image-label method, from its final checkpoint."""
    from reprokit.engine.reeval import load_trained_method

    cfg, method = load_trained_method(run_dir)
    if getattr(method, "cam_seed", None) is None:
        raise RunDirError(f"{run_dir}: method {cfg.method.name!r} trains on no CAM pseudo-masks; expected a run of "
                         "an image-label method with a CAM seed (cam, cosa)")
    return cfg, method


@torch.no_grad()
def score_cam_seed(cfg, method, batch_size: int = 32) -> dict:
    """The scores and pixel counts of ``method``'s CAM seed on the weakly labeled training images of ``cfg``."""
    from reprokit.data.datasets import ground_truth, resolve_splits
    from reprokit.data.weak_items import WeakLabeledImages
    from reprokit.data.weak_source import ensure_weak_labels
    from reprokit.labels import IGNORE_INDEX

    key = method.cam_seed
    samples = resolve_splits(cfg.data).labeled
    ensure_weak_labels(cfg.data, samples)
    images = WeakLabeledImages(samples, cfg.data)
    method.eval()
    total: dict = {}
    for start in range(0, len(images), batch_size):
        items = [images[i] for i in range(start, min(start + batch_size, len(images)))]
        batch = {k: torch.stack([it[k] for it in items]) for k in ("image", "valid", "image_labels")}
        truth = torch.stack([ground_truth(it) for it in items])
        counts = seed_counts(method.pseudo_labels(batch)[key], truth, batch["valid"], IGNORE_INDEX)
        total = {k: total.get(k, 0) + v for k, v in counts.items()}
    return {"images": len(images), "seed": key, **seed_scores(total), "counts": total}


def read_cam_seed(run_dir: str | Path) -> dict:
    path = Path(run_dir) / SEED_FILE
    if not path.is_file():
        raise RunDirError(f"{path}: no CAM seed measured; run `reprokit cam-seed {run_dir}` on the run "
                                "(it needs the run's checkpoint)")
    return json.loads(path.read_text())


def check_admissible(run_dirs) -> list[str]:
    """The runs of a CAM baseline (one per seed) whose seed does not beat all-background in pixel accuracy on
    the pixels it decides; an empty list admits the protocol. The rule is the baseline's: another method's
    seed is refused."""
    seeds = {str(r): read_cam_seed(r) for r in run_dirs}
    others = [r for r, s in seeds.items() if s["seed"] != CAMBaseline.cam_seed]
    if others:
        raise RunDirError(f"{others[0]}: not a CAM baseline run (its seed is {seeds[others[0]]['seed']!r}); the "
                          "admission rule is checked on the CAM baseline's seeds (method cam)")
    return [r for r, s in seeds.items() if not s["accuracy"] > s["all_background"]["accuracy"]]
