"""Label maps as every layer reads them: class ids 0..C-1, and 255, the value every reader, loss, metric and
figure ignores (VOC's object outlines, padding added by crops, Cityscapes ids outside the 19 train ids); a sparse
label marks its unlabeled pixels with C. Which classes a map holds and which values it may hold are decided
here once, below every layer."""
from __future__ import annotations

import numpy as np
import torch

IGNORE_INDEX = 255


def classes_present(labels, num_classes: int) -> torch.Tensor:
    """Bool [..., C]: the class ids that occur in a label map [H, W] (numpy or torch) or in each map of a batch
    [B, H, W]; values from C up (a sparse label's unlabeled C, the ignored 255) are no class."""
    if isinstance(labels, np.ndarray):
        labels = torch.from_numpy(np.array(labels, dtype=np.int64))
    flat = labels.long().clamp(max=num_classes).flatten(-2)
    present = torch.zeros(*flat.shape[:-1], num_classes + 1, dtype=torch.bool, device=flat.device)
    return present.scatter_(-1, flat, True)[..., :num_classes]


def check_label_values(labels: np.ndarray, num_classes: int, what: str, error: type[Exception] = ValueError,
                       unlabeled: bool = False) -> None:
    """Every value must be a class id 0..C-1, 255 or, with ``unlabeled`` (a sparse label), C: a stray value
    would crash the loss, vanish from the confusion matrix, or enter pseudo-label diagnostics unnoticed. The
    ``error`` raised names ``what`` (the file), the first bad pixel and the values out of range."""
    top = num_classes + 1 if unlabeled else num_classes
    bad = (labels < 0) | ((labels >= top) & (labels != IGNORE_INDEX))
    if bad.any():
        y, x = (int(v) for v in np.argwhere(bad)[0])
        allowed = (f"a class id 0..{num_classes - 1}, {num_classes} (unlabeled, = data.num_classes) nor 255 "
                   f"(unlabeled in some releases)" if unlabeled else
                   f"a class id 0..{num_classes - 1} (data.num_classes = {num_classes}) nor 255 (ignore)")
        raise error(f"{what}: label value {labels[y, x]} at row {y}, column {x} is neither {allowed}; values out "
                    f"of range here: {np.unique(labels[bad]).tolist()[:8]}; check data.num_classes")
