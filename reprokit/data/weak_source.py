"""The weak labels of a configured training set (``data.label_kind`` other than dense): where their files are,
which ones a training item carries, and the simulated files written before training.

The functions that read, simulate and write the files themselves are in :mod:`reprokit.data.weak_labels`;
this module applies them to a :class:`~reprokit.config.DataConfig`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from reprokit.config import SPARSE_KINDS, DataConfig
from reprokit.data import dataset
from reprokit.data.errors import WeakLabelError
from reprokit.data.splits import Sample
from reprokit.labels import classes_present
from reprokit.data.weak_labels import (image_labels, read_image_label_list, read_sparse_label, weak_label_path,
                                       write_simulated_labels)


def simulated(cfg: DataConfig) -> bool:
    """Whether the run's weak labels are simulated from the masks (``weak_source``; "auto": the digit scenes)."""
    return cfg.weak_source == "simulated" or (cfg.weak_source == "auto" and dataset(cfg.dataset).simulated_weak_labels)


def weak_seed(cfg: DataConfig) -> int:
    """The seed of simulated weak labels: ``weak_seed``, else ``split_seed``."""
    return cfg.split_seed if cfg.weak_seed is None else cfg.weak_seed


def weak_root(cfg: DataConfig) -> Path:
    """The folder whose point/, scribble/ or <N>clicks/ folders hold the weak labels: the data root for a data
    set's own files, ``<root>/simulated/seed<seed>`` for simulated ones (same layout, same reader)."""
    return Path(cfg.root) / "simulated" / f"seed{weak_seed(cfg)}" if simulated(cfg) else Path(cfg.root)


class WeakLabels:
    """Reads one training sample's weak label for :class:`~reprokit.data.datasets.SegDataset`."""

    def __init__(self, cfg: DataConfig):
        self.cfg, self.kind, self.num_classes = cfg, cfg.label_kind, cfg.num_classes
        self.root = weak_root(cfg)
        self.listed = read_image_label_list(cfg.image_label_list, cfg.num_classes) if cfg.image_label_list else None

    def path(self, sample: Sample) -> Path:
        return weak_label_path(self.root, self.cfg.dataset, self.kind, sample.id, sample.mask, self.cfg.clicks)

    def read(self, sample: Sample, mask: np.ndarray | None) -> tuple[dict[str, np.ndarray], torch.Tensor]:
        """(label maps to augment with the image, the image's classes before cropping). The maps are the
        sparse label (sparse kinds) and the dense mask as ``hidden_mask`` when the sample has one."""
        maps = {} if mask is None else {"hidden_mask": mask}
        if self.kind in SPARSE_KINDS:
            sparse, _ = read_sparse_label(self.path(sample), self.num_classes)
            if mask is not None and sparse.shape != mask.shape:
                raise WeakLabelError(
                    f"{self.path(sample)}: the {self.kind} label is {sparse.shape[1]}x{sparse.shape[0]} pixels but "
                    f"the image's mask {sample.mask} is {mask.shape[1]}x{mask.shape[0]}; expected the same size")
            maps["sparse"] = sparse
            return maps, classes_present(sparse, self.num_classes)
        if self.listed is not None:
            if sample.id not in self.listed:
                raise WeakLabelError(f"{self.cfg.image_label_list}: no image labels for training image {sample.id!r}")
            return maps, self.listed[sample.id]
        if mask is None:
            raise WeakLabelError(f"{sample.image}: image-level labels are taken from the mask, and this image has "
                                 "none; give data.image_label_list")
        return maps, image_labels(mask, self.num_classes)

    def crop_classes(self, maps: dict[str, np.ndarray]) -> torch.Tensor:
        """Bool [C]: the classes in the crop, from the sparse label (sparse kinds) or the mask (image labels)."""
        label = maps["sparse"] if self.kind in SPARSE_KINDS else maps["hidden_mask"]
        return classes_present(label, self.num_classes)


def ensure_weak_labels(cfg: DataConfig, samples: list[Sample]) -> list[Path]:
    """Make sure the simulated weak labels of ``samples`` are on disk, written with the configured parameters
    (a no-op for dense labels, image labels, which come from the masks, and a data set's own files); returns
    their paths."""
    if cfg.label_kind not in SPARSE_KINDS or not simulated(cfg):
        return []
    reader = WeakLabels(cfg)
    # every sample, even when all files exist: the writer's manifest notices a change of the simulation's
    # parameters or protocol (and replaces the old files); files written with the same parameters are kept
    return write_simulated_labels(Path(cfg.root), [s.id for s in samples], cfg.label_kind, cfg.num_classes,
                                  weak_seed(cfg), clicks=cfg.clicks, out_root=reader.root, dataset=cfg.dataset,
                                  mask_paths=[s.mask for s in samples])
