"""The embedded default data set: "digit scenes" built offline from scikit-learn's handwritten digits.

Each scene is an RGB image on a coloured, textured background holding a few upscaled digits at random
positions, scales and colours (they may overlap; the later digit is on top). Labels follow Pascal VOC:
background 0, digit d -> class d + 1, and 255 on a thin band along every object edge. Digit classes are
drawn from a long-tailed profile (digit 0 the most frequent, digit 9 the rarest by default) because STPG
is about minority classes. Train and val scenes use disjoint source digits. The result is written in the
Pascal VOC layout so the VOC reader serves it unchanged.

A build only ever writes into a directory that is empty, missing, or already the package's own (marked by
``BUILD_MARK``, written before anything else, or by the ``meta.json`` of a finished build): pointed at a
real data set by mistake, it stops instead of writing scenes and lists into that tree.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from reprokit.data import DataSet, voc
from reprokit.data.canvas import background, contrasting_colour
from reprokit.data.errors import DataRootError
from reprokit.data.palette import voc_palette
from reprokit.labels import IGNORE_INDEX
from reprokit.records import write_json_atomic

CLASS_NAMES = ["background"] + [f"digit {d}" for d in range(10)]
NUM_CLASSES = len(CLASS_NAMES)
BUILD_MARK = ".reprokit-digit-scenes"


@dataclass
class DigitScenesSpec:
    n_train: int = 2000
    n_val: int = 500
    size: int = 48
    min_digits: int = 1
    max_digits: int = 3
    min_scale: int = 16  # rendered digit height in pixels
    max_scale: int = 26
    max_overlap: float = 0.2  # largest share of a digit's box another digit may cover
    imbalance: float = 20.0  # P(most frequent digit) / P(rarest digit)
    val_source_fraction: float = 0.3
    edge_band: int = 1  # width in pixels of the 255 band along object edges
    seed: int = 0


def class_profile(imbalance: float) -> np.ndarray:
    """Geometric long-tail over digits 0..9: p[0] / p[9] == imbalance."""
    if imbalance < 1:
        raise ValueError(f"imbalance must be >= 1 (P(head)/P(tail)), got {imbalance}")
    p = imbalance ** (-np.arange(10) / 9.0)
    return p / p.sum()


def split_sources(target: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded split of source digit indices into disjoint train / val pools."""
    rng = np.random.default_rng([seed, 7])
    train, val = [], []
    for d in range(10):
        idx = rng.permutation(np.flatnonzero(target == d))
        n_val = max(1, int(round(len(idx) * val_fraction)))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.concatenate(train), np.concatenate(val)


def _glyph(image8: np.ndarray, height: int) -> np.ndarray:
    """8x8 digit (0..16) -> smooth alpha map in [0, 1] of the given height (aspect kept square)."""
    img = Image.fromarray((image8 * 255 / 16).astype(np.uint8)).resize((height, height), Image.BICUBIC)
    return np.clip(np.asarray(img, dtype=np.float32) / 255, 0, 1)


def _edge_band(label: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` of a change of class (VOC marks object outlines as 255): background
    pixels next to a digit, and digit pixels next to a different digit. Digit pixels bordering only
    background are kept, so thin strokes keep their width."""
    padded = np.pad(label, width, mode="edge")
    h, w = label.shape
    near_digit = np.zeros(label.shape, bool)
    near_other_digit = np.zeros(label.shape, bool)
    for dy in range(-width, width + 1):
        for dx in range(-width, width + 1):
            n = padded[width + dy: width + dy + h, width + dx: width + dx + w]
            near_digit |= n > 0
            near_other_digit |= (n > 0) & (n != label)
    return ((label == 0) & near_digit) | ((label > 0) & near_other_digit)


def _position(rng: np.random.Generator, size: int, h: int, boxes: list, max_overlap: float) -> tuple[int, int]:
    """Top-left corner for an h x h digit whose box overlaps every earlier box by at most ``max_overlap``
    of the smaller box; after a few rejected draws the last draw is kept (scenes stay bounded in cost)."""
    for _ in range(20):
        y, x = (int(v) for v in rng.integers(0, size - h + 1, size=2))
        if all(_overlap((y, x, h), b) <= max_overlap for b in boxes):
            break
    return y, x


def _overlap(a: tuple, b: tuple) -> float:
    (ya, xa, ha), (yb, xb, hb) = a, b
    iy = max(0, min(ya + ha, yb + hb) - max(ya, yb))
    ix = max(0, min(xa + ha, xb + hb) - max(xa, xb))
    return iy * ix / min(ha, hb) ** 2


def render_scene(rng: np.random.Generator, spec: DigitScenesSpec, images: np.ndarray, target: np.ndarray,
                 pool: np.ndarray, profile: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """One scene: (HxWx3 uint8 image, HxW uint8 label, digit classes placed)."""
    size = spec.size
    canvas = background(rng, size)
    label = np.zeros((size, size), np.uint8)
    by_digit = [pool[target[pool] == d] for d in range(10)]
    placed, boxes = [], []
    for _ in range(rng.integers(spec.min_digits, spec.max_digits + 1)):
        digit = int(rng.choice(10, p=profile))
        src = images[rng.choice(by_digit[digit])]
        h = int(rng.integers(spec.min_scale, spec.max_scale + 1))
        alpha = _glyph(src, h)
        y, x = _position(rng, size, h, boxes, spec.max_overlap)
        boxes.append((y, x, h))
        region = canvas[y:y + h, x:x + h]
        colour = contrasting_colour(rng, region.mean((0, 1)))
        canvas[y:y + h, x:x + h] = region * (1 - alpha[..., None]) + colour * alpha[..., None]
        label[y:y + h, x:x + h][alpha > 0.35] = digit + 1
        placed.append(digit + 1)
    label[_edge_band(label, spec.edge_band)] = IGNORE_INDEX
    return np.clip(canvas, 0, 255).astype(np.uint8), label, placed


def write_palette_png(path: Path, label: np.ndarray) -> None:
    img = Image.fromarray(label, mode="P")
    img.putpalette(voc_palette(256).reshape(-1).tolist())
    img.save(path)


def build_digit_scenes(out: str | Path, spec: DigitScenesSpec | None = None, progress: bool = False) -> dict:
    """Write the digit-scenes data set under ``out`` in the VOC layout; returns its metadata.

    Deterministic: the same spec gives byte-identical files. Returns (and writes to ``meta.json``)
    the spec, class names, per-split instance and pixel counts, and the build time in seconds.
    """
    from sklearn.datasets import load_digits

    spec = spec or DigitScenesSpec()
    start = time.perf_counter()
    out = Path(out)
    claim_build_dir(out)
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    images, target = digits.images, digits.target
    train_pool, val_pool = split_sources(target, spec.val_source_fraction, spec.seed)
    profile = class_profile(spec.imbalance)
    meta = {"spec": asdict(spec), "class_names": CLASS_NAMES, "splits": {}}
    iterator = [("train", spec.n_train, train_pool), ("val", spec.n_val, val_pool)]
    for split_id, (split, count, pool) in enumerate(iterator):
        ids, instances, pixels = [], np.zeros(NUM_CLASSES, np.int64), np.zeros(NUM_CLASSES, np.int64)
        for i in range(count):
            rng = np.random.default_rng([spec.seed, split_id, i])
            image, label, placed = render_scene(rng, spec, images, target, pool, profile)
            scene_id = f"{split}_{i:05d}"
            Image.fromarray(image).save(out / "JPEGImages" / f"{scene_id}.jpg", quality=95)
            write_palette_png(out / "SegmentationClass" / f"{scene_id}.png", label)
            ids.append(scene_id)
            np.add.at(instances, placed, 1)
            pixels += np.bincount(label[label != IGNORE_INDEX], minlength=NUM_CLASSES)
        (out / "ImageSets/Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
        meta["splits"][split] = {
            "count": count,
            "source_digits": int(len(pool)),
            "instances_per_class": instances.tolist(),
            "pixels_per_class": pixels.tolist(),
        }
    meta["source_digits_disjoint"] = not set(train_pool.tolist()) & set(val_pool.tolist())
    meta["build_seconds"] = round(time.perf_counter() - start, 3)
    write_json_atomic(out / "meta.json", meta)  # last: it marks the build complete
    return meta


def _finished_build(root: Path) -> bool:
    """True when ``root`` holds a complete digit-scenes build (its meta.json, written last, names the classes)."""
    try:
        meta = json.loads((root / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("class_names") == CLASS_NAMES and "spec" in meta


def claim_build_dir(out: Path) -> None:
    """Make ``out`` the package's own build directory, or stop naming what is already there.

    Builds of any spec (finished, or interrupted after the mark was written) may be rebuilt; anything else
    (a VOC tree, a user's files) is refused, so a wrong ``data.root`` never loses a user's data."""
    if out.exists() and not out.is_dir():
        raise DataRootError(f"{out}: cannot build the digit scenes here: it is a file, not a directory")
    found = sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir()) if out.is_dir() else []
    if found and not ((out / BUILD_MARK).is_file() or _finished_build(out)):
        shown = ", ".join(found[:6]) + (f" and {len(found) - 6} more" if len(found) > 6 else "")
        raise DataRootError(
            f"{out}: refusing to build the digit scenes into a directory that holds files reprokit did not create "
            f"(found {shown}). Expected an empty or missing directory, or an earlier digit-scenes build. If this is "
            f"your data set, set data.dataset to it (voc, cityscapes); otherwise choose another data.root "
            f"(reprokit data digits: --out)")
    out.mkdir(parents=True, exist_ok=True)
    (out / BUILD_MARK).write_text("digit scenes built by reprokit.data.digits; this directory may be rebuilt\n")


def ensure_digit_scenes(root: str | Path, spec: DigitScenesSpec | None = None) -> Path:
    """Build the default data set at ``root`` unless a finished build is there; an existing build (of any
    spec) is left untouched, so a custom build is never overwritten, and a directory holding anything else
    is refused (:func:`claim_build_dir`)."""
    root = Path(root)
    if not _finished_build(root):
        build_digit_scenes(root, spec)
    return root


# the digit scenes are written in VOC's classic layout, and built on first use
DATASET = DataSet(
    name="digits", class_names=tuple(CLASS_NAMES),
    resolver=lambda cfg, split: voc.resolver(cfg.root, "classic"),
    default_list=lambda cfg, split: voc.default_lists(cfg.root, "classic")[split],
    read_mask=voc.read_mask, weak_label_path=voc.sparse_label_path, palette=lambda: voc_palette(256),
    prepare=lambda cfg: ensure_digit_scenes(cfg.root), simulated_weak_labels=True)
