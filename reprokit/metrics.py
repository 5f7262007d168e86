"""Segmentation metrics computed on the device: a bincount confusion matrix, IoU and mIoU."""
from __future__ import annotations

import torch

from reprokit.labels import IGNORE_INDEX


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
                     ) -> torch.Tensor:
    """LongTensor[C, C] with rows = ground truth and columns = prediction; ``ignore_index`` pixels are skipped.

    One ``torch.bincount`` on the device. Selecting the kept pixels by a boolean mask (and, on CUDA, sizing
    the bincount) waits for the device once per call: once per evaluation batch, which evaluation affords;
    the per-step training code avoids both (see :func:`reprokit.methods.stpg.mismatch_scores`).
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    target, pred = target.reshape(-1).long(), pred.reshape(-1).long()
    keep = (target != ignore_index) & (target >= 0) & (target < num_classes)
    idx = target[keep] * num_classes + pred[keep]
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou(confusion: torch.Tensor) -> torch.Tensor:
    """FloatTensor[C]: TP / (TP + FP + FN) per class; NaN for a class absent from both prediction and truth."""
    conf = confusion.double()
    tp = conf.diag()
    union = conf.sum(0) + conf.sum(1) - tp
    return (tp / union).float()  # 0/0 -> NaN marks "not present"


def mean_iou(confusion: torch.Tensor) -> float:
    """Mean over classes present in the ground truth or the prediction (NaN classes left out)."""
    values = iou(confusion)
    return float(torch.nanmean(values)) if torch.isfinite(values).any() else float("nan")


def pixel_accuracy(confusion: torch.Tensor) -> float:
    total = confusion.sum()
    return float(confusion.diag().sum() / total) if total > 0 else float("nan")
