"""Pascal VOC 2012 (classic 1464 fine masks or the 10582-image SegmentationClassAug layout) and
any data set written in its layout, such as the embedded digit scenes."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from reprokit.data import DataSet
from reprokit.data.errors import MaskError
from reprokit.data.images import open_whole
from reprokit.data.palette import voc_palette
from reprokit.data.splits import Sample

CLASS_NAMES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]
MASK_DIRS = {"classic": "SegmentationClass", "aug": "SegmentationClassAug"}


def read_mask(path: str | Path) -> np.ndarray:
    """Read a VOC-style mask as a HxW uint8 array of palette indices (255 = ignore), as stored.

    Palette ('P') and grayscale ('L') PNGs are read as indices directly; an RGB mask is mapped back
    through the VOC palette, and a colour outside it is an error naming the file.
    """
    path = Path(path)
    img = open_whole(path, MaskError, "mask")
    if img.mode in ("P", "L"):
        return np.array(img, dtype=np.uint8)
    if img.mode in ("RGB", "RGBA"):
        rgb = np.array(img.convert("RGB"), dtype=np.int64)
        key = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        pal = voc_palette(256).astype(np.int64)
        lut = {int((r << 16) | (g << 8) | b): i for i, (r, g, b) in enumerate(pal)}
        values, inverse = np.unique(key, return_inverse=True)
        unknown = [v for v in values.tolist() if v not in lut]
        if unknown:
            v = unknown[0]
            raise MaskError(f"{path}: RGB mask colour {(v >> 16, (v >> 8) & 255, v & 255)} is not in the VOC palette")
        return np.array([lut[v] for v in values.tolist()], np.uint8)[inverse].reshape(key.shape)
    raise MaskError(f"{path}: unsupported mask mode {img.mode!r} (expected palette, grayscale or RGB PNG)")


def resolver(root: str | Path, layout: str = "classic"):
    """Map a list line to a :class:`Sample`: an id, or 'JPEGImages/x.jpg SegmentationClassAug/x.png'."""
    root = Path(root)
    mask_dir = MASK_DIRS[layout]

    def resolve(line: str) -> Sample:
        tokens = line.split()
        if len(tokens) == 2:
            return Sample(Path(tokens[0]).stem, root / tokens[0], root / tokens[1])
        sid = tokens[0]
        if "/" in sid:
            sid = Path(sid).stem
        return Sample(sid, root / "JPEGImages" / f"{sid}.jpg", root / mask_dir / f"{sid}.png")

    return resolve


def default_lists(root: str | Path, layout: str) -> dict[str, Path]:
    """The dataset's own train / val lists (``train_aug.txt`` for the augmented layout when present)."""
    sets = Path(root) / "ImageSets" / "Segmentation"
    train = sets / "train_aug.txt" if layout == "aug" and (sets / "train_aug.txt").is_file() else sets / "train.txt"
    return {"train": train, "val": sets / "val.txt"}


def sparse_label_path(root: str | Path, kind: str, sample_id: str, mask_path=None, clicks: int = 100) -> Path:
    """Sparse labels in the layout of the public releases: points ``<root>/point/segcls/<id>.png`` and scribbles
    ``<root>/scribble/seginst/<id>.png`` (TreeEnergyLoss release, read by AGMM-SASS); clicks
    ``<root>/<N>clicks/<mask file name>``."""
    root = Path(root)
    if kind == "points":
        return root / "point" / "segcls" / f"{sample_id}.png"
    if kind == "scribbles":
        return root / "scribble" / "seginst" / f"{sample_id}.png"
    return root / f"{clicks}clicks" / (Path(mask_path).name if mask_path else f"{sample_id}.png")


DATASET = DataSet(
    name="voc", class_names=tuple(CLASS_NAMES),
    resolver=lambda cfg, split: resolver(cfg.root, cfg.voc_layout),
    default_list=lambda cfg, split: default_lists(cfg.root, cfg.voc_layout)[split],
    read_mask=read_mask, weak_label_path=sparse_label_path, palette=lambda: voc_palette(256))
