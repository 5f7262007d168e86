"""Segmentation data sets over :class:`~reprokit.data.splits.Sample` lists, and their construction
from a :class:`~reprokit.config.DataConfig` (lists read or drawn, then recorded in the run)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF

from reprokit.config import DataConfig
from reprokit.data import dataset
from reprokit.data.samples import load_sample
from reprokit.data.splits import ListReader, Sample, SplitError, check_disjoint, draw_split, read_list, write_list
from reprokit.data.transforms import StrongAug, WeakAug, normalize
from reprokit.data.weak_source import WeakLabels


#: what a sample's mask is, by the role of its split, and the item key it travels under (None: not read).
#: The ground truth of unlabeled images never travels under ``mask``, the key training steps read labels from.
MASK_ROLES = {"labels": "mask", "hidden": "hidden_mask", "skip": None}


def ground_truth(item: dict):
    """The known ground truth of an item for display and diagnostics: its label, else its hidden mask."""
    return item.get("mask", item.get("hidden_mask"))


class SegDataset(torch.utils.data.Dataset):
    """Items are dicts: ``image`` (normalised 3xHxW), ``valid`` (non-padding pixels), optional ``image_s``
    (strong photometric view of the same crop), ``index`` and ``id``, and the sample's mask (long HxW, 255
    ignore) under the key its role gives it (:data:`MASK_ROLES`): ``mask`` for labels a method may train on,
    ``hidden_mask`` for the ground truth of unlabeled images, which only evaluation and diagnostics read.

    A training set of weakly labeled images (``data.label_kind`` other than dense, role "labels") gives no
    ``mask``: it gives ``image_labels`` (bool [C], the classes of the whole image, read before cropping),
    ``crop_labels`` (those of the crop) and, for sparse kinds, ``sparse`` (long HxW: a class id at labeled
    pixels, C at unlabeled ones, 255 at padding). Its dense mask travels as ``hidden_mask`` when
    ``hidden_truth`` asks for it (diagnostics), and never otherwise.

    Indexed by ``(index, aug_seed)`` during training (see :mod:`reprokit.data.sampler`) or by a plain
    ``index`` for evaluation (no augmentation).
    """

    def __init__(self, samples: list[Sample], cfg: DataConfig, train: bool, strong: bool = False,
                 masks: str = "labels", hidden_truth: bool = False):
        if masks not in MASK_ROLES:
            raise ValueError(f"masks={masks!r}: expected one of {', '.join(MASK_ROLES)}")
        self.samples, self.cfg, self.train, self.strong = samples, cfg, train, strong
        self.mask_key = MASK_ROLES[masks]
        self.weak_labels = WeakLabels(cfg) if train and masks == "labels" and cfg.label_kind != "dense" else None
        self.hidden_truth = hidden_truth
        self.weak_aug = WeakAug(cfg.crop_size, cfg.scale_range, cfg.scale_choices, cfg.flip,
                            sparse_unlabeled=cfg.num_classes)
        self.strong_aug = StrongAug(**dataclasses.asdict(cfg.strong))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key):
        index, aug_seed = key if isinstance(key, tuple) else (key, None)
        sample = self.samples[index]
        image, mask = load_sample(sample, self.cfg, with_mask=self.mask_key is not None)
        labels, whole = ({self.mask_key: mask} if mask is not None else {}), None
        if self.weak_labels is not None:
            labels, whole = self.weak_labels.read(sample, mask)
        if self.train:
            rng = np.random.default_rng(aug_seed)
            img, labels, valid = self.weak_aug(image, labels, rng)
        else:
            img, valid = np.array(image, dtype=np.uint8), np.ones(image.size[::-1], bool)
        x = TF.to_tensor(img)
        item = {"image": normalize(x, self.cfg.mean, self.cfg.std), "valid": torch.from_numpy(valid),
                "index": index, "id": sample.id}
        if whole is not None:
            item["image_labels"], item["crop_labels"] = whole, self.weak_labels.crop_classes(labels)
            if not self.hidden_truth:
                labels.pop("hidden_mask", None)
        item.update({name: torch.from_numpy(lab.astype(np.int64)) for name, lab in labels.items()})
        if self.train and self.strong:
            x_s = self.strong_aug(x, rng) if self.cfg.strong_photometric else x
            item["image_s"] = normalize(x_s, self.cfg.mean, self.cfg.std)
        return item


@dataclass
class Splits:
    labeled: list[Sample]
    unlabeled: list[Sample]
    val: list[Sample]
    family: str


def _resolver(cfg: DataConfig, split: str):
    return dataset(cfg.dataset).resolver(cfg, split)


def _default_list(cfg: DataConfig, split: str) -> Path:
    return dataset(cfg.dataset).default_list(cfg, split)


def resolve_splits(cfg: DataConfig, read: ListReader = read_list) -> Splits:
    """Read the configured lists or draw the labeled subset from ``split_seed``; validate everything.
    ``read`` reads one list (the data check passes one that collects bad lines instead of stopping)."""
    val_file = cfg.val_list or _default_list(cfg, "val")
    val = read(val_file, cfg.root, _resolver(cfg, "val"))
    if cfg.labeled_list:
        labeled = read(cfg.labeled_list, cfg.root, _resolver(cfg, "train"))
        if cfg.unlabeled_list:
            unlabeled = read(cfg.unlabeled_list, cfg.root, _resolver(cfg, "train"), need_masks=False)
        else:
            pool = read(cfg.train_list or _default_list(cfg, "train"), cfg.root, _resolver(cfg, "train"),
                        need_masks=False)
            taken = {s.id for s in labeled}
            unlabeled = [s for s in pool if s.id not in taken]
        check_disjoint(labeled, unlabeled, str(cfg.labeled_list), str(cfg.unlabeled_list or "the train pool"))
        return Splits(labeled, unlabeled, val, cfg.split_family)
    if cfg.unlabeled_list:
        raise SplitError("data.unlabeled_list was given without data.labeled_list")
    pool = read(cfg.train_list or _default_list(cfg, "train"), cfg.root, _resolver(cfg, "train"))
    if cfg.labeled_count is None and cfg.labeled_fraction is None:
        return Splits(pool, [], val, cfg.split_family)
    labeled, unlabeled = draw_split(pool, cfg.split_seed, cfg.labeled_count, cfg.labeled_fraction)
    return Splits(labeled, unlabeled, val, "drawn")


def record_splits(splits: Splits, out_dir: Path) -> dict[str, str]:
    """Write the lists actually used into the run directory (they are part of the result); a list an
    earlier start of the run wrote but this one does not use is removed."""
    out = {}
    for name in ("labeled", "unlabeled", "val"):
        samples, path = getattr(splits, name), out_dir / "splits" / f"{name}.txt"
        if samples:
            out[name] = str(write_list(path, samples).relative_to(out_dir))
        else:
            path.unlink(missing_ok=True)
    return out


def class_names(cfg: DataConfig) -> list[str]:
    names = list(dataset(cfg.dataset).class_names)
    if len(names) != cfg.num_classes:
        return [f"class {i}" for i in range(cfg.num_classes)]
    return names


def collate(items: list[dict]) -> dict:
    """Stack tensors; keep lists for ids. A batch lacking masks on some items drops the key."""
    out = {}
    for key in items[0]:
        values = [it.get(key) for it in items]
        if any(v is None for v in values):
            continue
        out[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else (
            torch.tensor(values) if isinstance(values[0], int) else values)
    return out


