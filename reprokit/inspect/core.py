"""The inspector's model, free of widgets: cached network outputs per (checkpoint, split, batch), and the
pure functions that turn them into the layers, statistics and composed view the widgets show.

Only a new (checkpoint, split, batch) triggers a forward pass; every display setting (layers, opacity,
class filter, threshold) recomposes cached arrays, which keeps the widget responsive on a CPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reprokit.data.datasets import ground_truth
from reprokit.data.palette import palette_for
from reprokit.data.transforms import cutmix_box_masks
from reprokit.labels import IGNORE_INDEX

LABEL_LAYERS = ("ground truth", "teacher pseudo-label", "student prediction")
OVERLAY_LAYERS = ("confidence", "cutmix boxes")


def layer_names(method_layers=()) -> tuple[str, ...]:
    """Every layer offered for a method: its label maps, the layers the method declares
    (:attr:`reprokit.methods.base.Method.inspector_layers`), then confidence and CutMix boxes."""
    return (*LABEL_LAYERS, *(layer.title for layer in method_layers), *OVERLAY_LAYERS)


@dataclass
class ImageMaps:
    """Everything shown for one image, as numpy arrays (H x W) plus the batch's mismatch scores."""

    image: np.ndarray  # H x W x 3 uint8
    gt: np.ndarray | None
    teacher: np.ndarray
    confidence: np.ndarray
    student: np.ndarray
    categories: dict[str, np.ndarray]  # layer title -> category ids, for the layers the method declares
    scores: np.ndarray | None  # [C] mismatch scores of the image's batch (STPG)
    boxes: np.ndarray  # H x W bool, CutMix boxes the strong view would paste here


class MapCache:
    """Computes :class:`ImageMaps` for (checkpoint, split, index), one batch at a time, and caches them.

    ``method`` is any Method exposing ``pseudo_labels``; ``checkpoints`` maps a label to a state dict
    loader (a callable returning the method's state dict); ``splits`` maps a split name to a dataset
    returning un-augmented items (``image``, ``valid``, and optionally ``mask`` or ``hidden_mask``)."""

    def __init__(self, method, splits: dict, checkpoints: dict, raw_image, batch_size: int = 8,
                 cutmix_boxes: int = 3, cutmix_area=(0.25, 0.5)):
        self.method, self.splits, self.checkpoints = method.eval(), splits, checkpoints
        self.layers = method.inspector_layers
        self.raw_image, self.batch_size = raw_image, batch_size
        self.cutmix_boxes, self.cutmix_area = cutmix_boxes, cutmix_area
        self.cache: dict[tuple, ImageMaps] = {}
        self.loaded: str | None = None
        self.forward_passes = 0

    def get(self, checkpoint: str, split: str, index: int) -> ImageMaps:
        key = (checkpoint, split, index)
        if key not in self.cache:
            self._compute_batch(checkpoint, split, index - index % self.batch_size)
        return self.cache[key]

    def _load(self, checkpoint: str) -> None:
        if self.loaded != checkpoint:
            self.method.load_state_dict(self.checkpoints[checkpoint]())
            self.method.eval()
            self.loaded = checkpoint

    @torch.no_grad()
    def _compute_batch(self, checkpoint: str, split: str, start: int) -> None:
        self._load(checkpoint)
        ds = self.splits[split]
        idx = list(range(start, min(start + self.batch_size, len(ds))))
        items = [ds[i] for i in idx]
        batch = {"image": torch.stack([it["image"] for it in items]),
                 "valid": torch.stack([it["valid"] for it in items])}
        maps = {k: v.cpu().numpy() for k, v in self.method.pseudo_labels(batch).items()}
        self.forward_passes += 1
        h, w = batch["image"].shape[-2:]
        for j, i in enumerate(idx):
            g = torch.Generator().manual_seed(i)
            boxes = cutmix_box_masks(1, h, w, self.cutmix_boxes, self.cutmix_area, generator=g)[0].numpy() \
                if self.cutmix_boxes else np.zeros((h, w), bool)
            mask = ground_truth(items[j])
            self.cache[(checkpoint, split, i)] = ImageMaps(
                image=self.raw_image(split, i), gt=None if mask is None else mask.numpy().astype(np.int64),
                teacher=maps["teacher_label"][j], confidence=maps["confidence"][j], student=maps["student_pred"][j],
                categories={layer.title: maps[layer.key][j] for layer in self.layers},
                scores=maps.get("scores"), boxes=boxes)


def label_layer(labels: np.ndarray, dataset: str, classes: set[int] | None, keep: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """(RGB, alpha mask) of a label map in the data set's palette; pixels outside ``classes`` or ``keep``
    (and ignore pixels) are transparent."""
    rgb = palette_for(dataset)[np.clip(labels, 0, 255).astype(np.uint8)]
    shown = labels != IGNORE_INDEX
    if classes is not None:
        shown &= np.isin(labels, list(classes))
    if keep is not None:
        shown &= keep
    return rgb, shown


def confidence_layer(conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Heat map (dark blue = unsure, yellow = sure) of the teacher's max probability."""
    from matplotlib import colormaps

    rgb = (colormaps["viridis"](np.clip(conf, 0, 1))[..., :3] * 255).astype(np.uint8)
    return rgb, np.ones(conf.shape, bool)


def category_layer(category: np.ndarray, colours, classes: set[int] | None, teacher: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(RGB, shown) of per-pixel category ids in the method's ``colours``; with a class filter, only pixels
    whose pseudo-label is a chosen class."""
    rgb = np.asarray(colours, dtype=np.uint8)[category]
    shown = np.ones(category.shape, bool) if classes is None else np.isin(teacher, list(classes))
    return rgb, shown


def box_outline(boxes: np.ndarray) -> np.ndarray:
    """Boundary pixels of the CutMix box mask (drawn as white outlines)."""
    edge = np.zeros_like(boxes)
    edge[:-1] |= boxes[:-1] != boxes[1:]
    edge[1:] |= boxes[1:] != boxes[:-1]
    edge[:, :-1] |= boxes[:, :-1] != boxes[:, 1:]
    edge[:, 1:] |= boxes[:, 1:] != boxes[:, :-1]
    return edge


def compose(maps: ImageMaps, layers: list[str], opacity: float, dataset: str, classes: set[int] | None,
            threshold: float, method_layers=()) -> np.ndarray:
    """The view: the image with the chosen layers blended on top in order (each at ``opacity``);
    ``method_layers`` are the method's declared layers, drawn when chosen and present in ``maps``."""
    out = maps.image.astype(np.float32)
    keep = maps.confidence >= threshold
    declared = {m.title: m for m in method_layers}
    for layer in layers:
        if layer == "ground truth" and maps.gt is not None:
            rgb, shown = label_layer(maps.gt, dataset, classes)
        elif layer == "teacher pseudo-label":
            rgb, shown = label_layer(maps.teacher, dataset, classes, keep)
        elif layer == "student prediction":
            rgb, shown = label_layer(maps.student, dataset, classes)
        elif layer in declared and layer in maps.categories:
            rgb, shown = category_layer(maps.categories[layer], declared[layer].colours, classes, maps.teacher)
        elif layer == "confidence":
            rgb, shown = confidence_layer(maps.confidence)
        elif layer == "cutmix boxes":
            rgb, shown = np.full(maps.image.shape, 255, np.uint8), box_outline(maps.boxes)
            out[shown] = rgb[shown]
            continue
        else:
            continue
        a = opacity * shown[..., None]
        out = out * (1 - a) + rgb.astype(np.float32) * a
    return np.clip(out, 0, 255).astype(np.uint8)


def image_stats(maps: ImageMaps, threshold: float, num_classes: int, method_layers=()) -> dict:
    """Per-image statistics: pseudo-label accuracy against the ground truth (overall, at the threshold, and in
    each category of the method's layers), pixels kept at the confidence threshold, and the histogram of
    pseudo-label classes."""
    valid = np.ones(maps.teacher.shape, bool) if maps.gt is None else maps.gt != IGNORE_INDEX
    kept = (maps.confidence >= threshold) & valid
    stats = {"pixels": int(valid.sum()), "kept": int(kept.sum()),
             "histogram": np.bincount(maps.teacher[valid].ravel(), minlength=num_classes)[:num_classes]}
    if maps.gt is not None:
        right = maps.teacher == maps.gt
        stats["accuracy"] = float(right[valid].mean()) if valid.any() else float("nan")
        stats["accuracy_kept"] = float(right[kept].mean()) if kept.any() else float("nan")
        for layer in method_layers:
            for c, name in enumerate(layer.names):
                where = valid & (maps.categories[layer.title] == c)
                stats[f"accuracy {name}"] = float(right[where].mean()) if where.any() else float("nan")
                stats[f"pixels {name}"] = int(where.sum())
    return stats


def run_checkpoints(run_dir: Path) -> dict:
    """Label -> loader of the method state, for the snapshots a run kept and its final checkpoint."""
    from reprokit.engine.checkpoint import load_checkpoint

    found = {f"step {int(p.stem.split('_')[-1])}": p for p in sorted(Path(run_dir, "snapshots").glob("step_*.pt"),
                                                                     key=lambda p: int(p.stem.split("_")[-1]))}
    if (Path(run_dir) / "checkpoint.pt").is_file():
        found["final"] = Path(run_dir) / "checkpoint.pt"
    return {label: (lambda p=p: load_checkpoint(p)["method"]) for label, p in found.items()}
