"""Weakly labeled training images as they are, without augmentation, with the weak labels training read.

What looks at the weak labels after training does not train: the inspector shows them, the CAM seed instrument
(``reprokit.runs.cam_seed``) scores CAM pseudo-masks made from them. Both read the images through this module,
which no training run imports.
"""
from __future__ import annotations

import numpy as np
import torch

from reprokit.data.datasets import SegDataset
from reprokit.data.weak_source import WeakLabels


class WeakLabeledImages(torch.utils.data.Dataset):
    """Weakly labeled training images as the inspector shows them: un-augmented items (``image``, ``valid``,
    the dense mask as ``hidden_mask``, for display only) carrying the weak labels training read: ``sparse``
    (sparse kinds; class id at labeled pixels, C elsewhere), ``image_labels`` and ``crop_labels`` (the same:
    the whole image is the crop)."""

    def __init__(self, samples, cfg):
        self.samples, self.reader = samples, WeakLabels(cfg)
        self.items = SegDataset(samples, cfg, train=False, masks="hidden")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        mask = item.get("hidden_mask")
        maps, classes = self.reader.read(self.samples[index], None if mask is None else mask.numpy())
        if "sparse" in maps:
            item["sparse"] = torch.from_numpy(maps["sparse"].astype(np.int64))
        item["image_labels"] = item["crop_labels"] = classes
        return item
