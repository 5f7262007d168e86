"""Cityscapes: leftImg8bit images with gtFine masks, label ids mapped to the 19 official train ids."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from reprokit.data import DataSet
from reprokit.data.palette import voc_palette
from reprokit.data.splits import Sample
from reprokit.data.voc import read_mask as read_stored_mask
from reprokit.labels import IGNORE_INDEX

CLASS_NAMES = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
]
# official labelId -> trainId mapping (cityscapesScripts); every other id is ignored
LABEL_TO_TRAIN = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
                  26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
_LUT = np.full(256, IGNORE_INDEX, np.uint8)
for _label, _train in LABEL_TO_TRAIN.items():
    _LUT[_label] = _train


def to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map Cityscapes label ids to train ids 0..18 (uint8); unlisted ids, including -1, become 255."""
    ids = np.asarray(label_ids)
    out = np.full(ids.shape, IGNORE_INDEX, np.uint8)
    inside = (ids >= 0) & (ids < 256)
    out[inside] = _LUT[ids[inside].astype(np.int64)]
    return out


def resolver(root: str | Path, split: str = "train"):
    """Map a list line to a :class:`Sample`.

    Accepts 'leftImg8bit/... gtFine/...' path pairs (public CPS/UniMatch lists), a single leftImg8bit
    path, or a 'city/city_000000_000019' stem. Masks default to ``*_gtFine_labelIds.png``.
    """
    root = Path(root)

    def resolve(line: str) -> Sample:
        tokens = line.split()
        image = tokens[0]
        if not image.startswith("leftImg8bit"):
            image = f"leftImg8bit/{split}/{image}_leftImg8bit.png"
        if len(tokens) == 2:
            mask = tokens[1]
        else:
            mask = image.replace("leftImg8bit/", "gtFine/", 1).replace("_leftImg8bit.png", "_gtFine_labelIds.png")
        sid = Path(image).name.replace("_leftImg8bit.png", "")
        return Sample(sid, root / image, root / mask)

    return resolve


def mask_needs_mapping(mask_path: Path) -> bool:
    """labelIds masks are mapped to train ids; labelTrainIds masks are already in train ids."""
    return "labelTrainIds" not in mask_path.name


def scan_split(root: str | Path, split: str) -> list[str]:
    """Stems of every image under leftImg8bit/<split> (used when no list file is given)."""
    base = Path(root) / "leftImg8bit" / split
    return sorted(str(p.relative_to(Path(root))) for p in base.glob("*/*_leftImg8bit.png"))


def default_list(root: str | Path, split: str) -> Path:
    """``<root>/<split>.txt``; without it, the folder tree scanned once and recorded beside it."""
    path = Path(root) / f"{split}.txt"
    if not path.is_file():
        path = Path(root) / f".reprokit_{split}_scan.txt"
        path.write_text("".join(f"{p}\n" for p in scan_split(root, split)))
    return path


def read_mask(path: Path) -> np.ndarray:
    """A gtFine mask as train ids: ``labelIds`` masks are mapped, ``labelTrainIds`` masks already hold them."""
    mask = read_stored_mask(path)
    return to_train_ids(mask) if mask_needs_mapping(path) else mask


def sparse_label_path(root: str | Path, kind: str, sample_id: str, mask_path=None, clicks: int = 100) -> Path:
    """Clicks only: ``<root>/<N>clicks/<basename of the gtFine labelTrainIds file>`` (a ``labelIds`` mask path
    is renamed to its ``labelTrainIds`` sibling; without a mask path the name is built from the id,
    ``<city>_<seq>_<frame>``)."""
    if kind != "clicks":
        raise ValueError(f"no public {kind} labels are known for Cityscapes (only 20/50/100 clicks); expected "
                         f"data.label_kind clicks for data.dataset cityscapes")
    name = Path(mask_path).name if mask_path else f"{Path(sample_id).name}_gtFine_labelIds.png"
    return Path(root) / f"{clicks}clicks" / name.replace("_gtFine_labelIds.png", "_gtFine_labelTrainIds.png")


def palette() -> np.ndarray:
    """The official colours of the 19 train ids over the VOC palette (ignore: light grey)."""
    pal = voc_palette(256)
    pal[: len(COLOURS)] = COLOURS
    return pal


COLOURS = np.array(
    [(128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
     (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
     (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32)],
    dtype=np.uint8,
)

DATASET = DataSet(
    name="cityscapes", class_names=tuple(CLASS_NAMES),
    resolver=lambda cfg, split: resolver(cfg.root, split),
    default_list=lambda cfg, split: default_list(cfg.root, split),
    read_mask=read_mask, weak_label_path=sparse_label_path, palette=palette)
