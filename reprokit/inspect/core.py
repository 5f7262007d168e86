"""The inspector's model, free of widgets: cached network outputs per (checkpoint, split, batch), and the
pure functions that turn them into the layers, statistics and composed view the widgets show.

Only a new (checkpoint, split, batch) triggers a forward pass; every display setting (layers, opacity,
class filter, threshold, heat-map class) recomposes cached arrays, which keeps the widget responsive on a CPU.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from reprokit.data.datasets import ground_truth
from reprokit.viz.palette import display_palette
from reprokit.data.transforms import cutmix_box_masks
from reprokit.labels import IGNORE_INDEX
from reprokit.methods.display import CategoryLayer, HeatLayer, LabelLayer

LABEL_LAYERS = ("ground truth", "teacher pseudo-label", "student prediction")
OVERLAY_LAYERS = ("confidence", "cutmix boxes")
SPARSE_LAYER = "sparse labels"
#: weak labels of the items, handed to ``pseudo_labels`` when every item of the batch has them
WEAK_KEYS = ("sparse", "image_labels", "crop_labels")


def layer_names(method_layers=(), sparse: bool = False) -> tuple[str, ...]:
    """Every layer offered for a method: its label maps, the layers the method declares
    (:attr:`reprokit.methods.base.Method.inspector_layers`), confidence and CutMix boxes, and, when the
    images have sparse labels, those labels."""
    return (*LABEL_LAYERS, *(layer.title for layer in method_layers), *OVERLAY_LAYERS,
            *((SPARSE_LAYER,) if sparse else ()))


@dataclass
class ImageMaps:
    """Everything shown for one image, as numpy arrays (H x W) plus the batch's mismatch scores."""

    image: np.ndarray  # H x W x 3 uint8
    gt: np.ndarray | None
    teacher: np.ndarray
    confidence: np.ndarray
    student: np.ndarray
    categories: dict[str, np.ndarray]  # layer title -> category ids, for the CategoryLayers the method declares
    scores: np.ndarray | None  # [C] mismatch scores of the image's batch (STPG)
    boxes: np.ndarray  # H x W bool, CutMix boxes the strong view would paste here
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # LabelLayer title -> class ids, 255 ignore
    heats: dict[str, np.ndarray] = field(default_factory=dict)  # HeatLayer title -> H x W, per class K x H x W
    sparse: np.ndarray | None = None  # the image's sparse label: class id at labeled pixels, 255 elsewhere


class MapCache:
    """Computes :class:`ImageMaps` for (checkpoint, split, index), one batch at a time, and caches them.

    ``method`` is any Method exposing ``pseudo_labels``; ``checkpoints`` maps a label to a state dict
    loader (a callable returning the method's state dict); ``splits`` maps a split name to a dataset
    returning un-augmented items (``image``, ``valid``, optionally ``mask`` or ``hidden_mask``, and the weak
    labels of :data:`WEAK_KEYS` the method may read)."""

    def __init__(self, method, splits: dict, checkpoints: dict, raw_image, batch_size: int = 8,
                 cutmix_boxes: int = 3, cutmix_area=(0.25, 0.5)):
        self.method, self.splits, self.checkpoints = method.eval(), splits, checkpoints
        self.layers = method.inspector_layers
        self.has_sparse = any(len(ds) and "sparse" in ds[0] for ds in splits.values())  # offer their layer
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
        batch = {key: torch.stack([it[key] for it in items]) for key in ("image", "valid", *WEAK_KEYS)
                 if all(key in it for it in items)}
        maps = {k: v.cpu().numpy() for k, v in self.method.pseudo_labels(batch).items()}
        self.forward_passes += 1
        h, w = batch["image"].shape[-2:]
        labels = {m.title: maps[m.key] for m in self.layers if isinstance(m, LabelLayer) and m.key in maps}
        heats = {m.title: heat_maps(maps, m) for m in self.layers if isinstance(m, HeatLayer)}
        heats = {title: values for title, values in heats.items() if values is not None}
        sparse = batch.get("sparse")
        if sparse is not None:  # unlabeled (C) and padding pixels alike are not drawn
            sparse = sparse.masked_fill(sparse >= self.method.num_classes, IGNORE_INDEX).numpy()
        for j, i in enumerate(idx):
            g = torch.Generator().manual_seed(i)
            boxes = cutmix_box_masks(1, h, w, self.cutmix_boxes, self.cutmix_area, generator=g)[0].numpy() \
                if self.cutmix_boxes else np.zeros((h, w), bool)
            mask = ground_truth(items[j])
            self.cache[(checkpoint, split, i)] = ImageMaps(
                image=self.raw_image(split, i), gt=None if mask is None else mask.numpy().astype(np.int64),
                teacher=maps["teacher_label"][j], confidence=maps["confidence"][j], student=maps["student_pred"][j],
                categories={m.title: maps[m.key][j] for m in self.layers if isinstance(m, CategoryLayer)},
                scores=maps.get("scores"), boxes=boxes, labels={t: v[j] for t, v in labels.items()},
                heats={t: v[j] for t, v in heats.items()}, sparse=None if sparse is None else sparse[j])


def heat_maps(maps: dict, layer: HeatLayer) -> np.ndarray | None:
    """A heat layer's scores for the batch ([B, H, W], or [B, K, H, W] per class; the maps ``<key>/<k>``
    stacked when the method returns one per class), as float16 since per-class stacks are large; None when
    the method did not return them."""
    if layer.key in maps:
        return maps[layer.key].astype(np.float16)
    per_class = []
    while layer.per_class and f"{layer.key}/{len(per_class)}" in maps:
        per_class.append(maps[f"{layer.key}/{len(per_class)}"])
    return np.stack(per_class, 1).astype(np.float16) if per_class else None


def class_scores(scores: np.ndarray, layer: HeatLayer, heat_class: int | None) -> np.ndarray | None:
    """The map a heat layer draws: its scores, or for a per-class stack the channel of ``heat_class``
    (default: the stack's first class); None when the stack scores no such class."""
    if not layer.per_class:
        return scores
    k = 0 if heat_class is None else heat_class - layer.first_class
    return scores[k] if 0 <= k < len(scores) else None


def label_layer(labels: np.ndarray, dataset: str, classes: set[int] | None, keep: np.ndarray | None = None,
                ignore: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(RGB, alpha mask) of a label map in the data set's palette; pixels outside ``classes`` or ``keep`` are
    transparent, and so are ignore pixels unless ``ignore`` draws them (in the palette's ignore colour)."""
    rgb = display_palette(dataset)[np.clip(labels, 0, 255).astype(np.uint8)]
    shown = labels != IGNORE_INDEX
    if classes is not None:
        shown &= np.isin(labels, list(classes))
    if keep is not None:
        shown &= keep
    if ignore:
        shown |= labels == IGNORE_INDEX
    return rgb, shown


def heat_layer(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Heat map of scores in [0, 1] (dark blue = 0, yellow = 1): the teacher's confidence, a method's heat layers."""
    from matplotlib import colormaps

    rgb = (colormaps["viridis"](np.clip(scores.astype(np.float32), 0, 1))[..., :3] * 255).astype(np.uint8)
    return rgb, np.ones(scores.shape, bool)


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
            threshold: float, method_layers=(), heat_class: int | None = None) -> np.ndarray:
    """The view: the image with the chosen layers blended on top in order (each at ``opacity``; CutMix box
    outlines and sparse labels opaque); ``method_layers`` are the method's declared layers, drawn when chosen
    and present in ``maps``, per-class heat layers at class ``heat_class``."""
    out = maps.image.astype(np.float32)
    keep = maps.confidence >= threshold
    declared = {m.title: m for m in method_layers}
    for layer in layers:
        kind = declared.get(layer)
        if layer == "ground truth" and maps.gt is not None:
            rgb, shown = label_layer(maps.gt, dataset, classes)
        elif layer == "teacher pseudo-label":
            rgb, shown = label_layer(maps.teacher, dataset, classes, keep)
        elif layer == "student prediction":
            rgb, shown = label_layer(maps.student, dataset, classes)
        elif isinstance(kind, CategoryLayer) and layer in maps.categories:
            rgb, shown = category_layer(maps.categories[layer], kind.colours, classes, maps.teacher)
        elif isinstance(kind, LabelLayer) and layer in maps.labels:
            rgb, shown = label_layer(maps.labels[layer], dataset, classes, ignore=True)
        elif isinstance(kind, HeatLayer) and layer in maps.heats:
            scores = class_scores(maps.heats[layer], kind, heat_class)
            if scores is None:
                continue
            rgb, shown = heat_layer(scores)
        elif layer == "confidence":
            rgb, shown = heat_layer(maps.confidence)
        elif layer == "cutmix boxes":
            rgb, shown = np.full(maps.image.shape, 255, np.uint8), box_outline(maps.boxes)
            out[shown] = rgb[shown]
            continue
        elif layer == SPARSE_LAYER and maps.sparse is not None:
            rgb, shown = label_layer(maps.sparse, dataset, classes)
            out[shown] = rgb[shown]
            continue
        else:
            continue
        a = opacity * shown[..., None]
        out = out * (1 - a) + rgb.astype(np.float32) * a
    return np.clip(out, 0, 255).astype(np.uint8)


def image_stats(maps: ImageMaps, threshold: float, num_classes: int, method_layers=()) -> dict:
    """Per-image statistics: pseudo-label accuracy against the ground truth (overall, at the threshold, and in
    each category of the method's category layers), the accuracy and size of the labeled part of its label
    layers, pixels kept at the confidence threshold, and the histogram of pseudo-label classes."""
    valid = np.ones(maps.teacher.shape, bool) if maps.gt is None else maps.gt != IGNORE_INDEX
    kept = (maps.confidence >= threshold) & valid
    stats = {"pixels": int(valid.sum()), "kept": int(kept.sum()),
             "histogram": np.bincount(maps.teacher[valid].ravel(), minlength=num_classes)[:num_classes]}
    if maps.gt is not None:
        right = maps.teacher == maps.gt
        stats["accuracy"] = float(right[valid].mean()) if valid.any() else float("nan")
        stats["accuracy_kept"] = float(right[kept].mean()) if kept.any() else float("nan")
        for layer in method_layers:
            if isinstance(layer, CategoryLayer):
                for c, name in enumerate(layer.names):
                    where = valid & (maps.categories[layer.title] == c)
                    stats[f"accuracy {name}"] = float(right[where].mean()) if where.any() else float("nan")
                    stats[f"pixels {name}"] = int(where.sum())
            elif isinstance(layer, LabelLayer) and layer.title in maps.labels:
                label = maps.labels[layer.title]
                where = valid & (label != IGNORE_INDEX)
                stats[f"accuracy {layer.title}"] = float((label == maps.gt)[where].mean()) if where.any() \
                    else float("nan")
                stats[f"pixels {layer.title}"] = int(where.sum())
    return stats


def run_checkpoints(run_dir: Path) -> dict:
    """Label -> loader of the method state, for the snapshots a run kept and its final checkpoint."""
    from reprokit.engine.checkpoint import load_checkpoint

    found = {f"step {int(p.stem.split('_')[-1])}": p for p in sorted(Path(run_dir, "snapshots").glob("step_*.pt"),
                                                                     key=lambda p: int(p.stem.split("_")[-1]))}
    if (Path(run_dir) / "checkpoint.pt").is_file():
        found["final"] = Path(run_dir) / "checkpoint.pt"
    return {label: (lambda p=p: load_checkpoint(p)["method"]) for label, p in found.items()}
