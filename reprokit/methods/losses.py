"""Losses shared by several methods: supervised CE / OHEM with its settings (every method's parameters extend
them), and the confidence-weighted CE with which Mean Teacher and STPG learn pseudo-labels."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reprokit.config import COUNT, PROBABILITY, MethodParams, ranged
from reprokit.labels import IGNORE_INDEX


@dataclass
class SupervisedParams(MethodParams):
    name: str = "supervised"
    ohem: bool = False  # OHEM cross-entropy (Cityscapes protocol)
    ohem_thresh: float = ranged(PROBABILITY, 0.7)
    ohem_min_kept: int = ranged(COUNT, 50000)  # per image


def ohem_ce(logits: torch.Tensor, target: torch.Tensor, thresh: float = 0.7, min_kept: int = 50000,
            ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Online hard example mining CE: keep pixels whose true-class probability is below ``thresh``,
    and at least the ``min_kept`` hardest ones (per batch); the Cityscapes protocol of CPS/STPG."""
    ce = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none").flatten()
    valid = target.flatten() != ignore_index
    ce = ce[valid]
    if ce.numel() == 0:
        return logits.sum() * 0
    prob_true = torch.exp(-ce)
    k = min(min_kept, ce.numel()) - 1
    threshold = max(thresh, float(prob_true.kthvalue(k + 1).values)) if k >= 0 else thresh
    hard = ce[prob_true <= threshold]
    return hard.mean() if hard.numel() else ce.mean()


def supervised_loss(logits: torch.Tensor, target: torch.Tensor, params) -> torch.Tensor:
    """Plain CE with ignore 255 (Eq. 1 term), or OHEM CE when ``params.ohem`` is set."""
    if getattr(params, "ohem", False):
        return ohem_ce(logits, target, params.ohem_thresh, params.ohem_min_kept * target.shape[0])
    return F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)


def weighted_ce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
                ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Confidence-weighted cross-entropy of Eqs. 7 and 11.

    Per-pixel CE times ``weight`` (teacher confidence, times the selection mask for the Pro-Student),
    averaged over all pixels whose target is not ``ignore_index``: zero-weight pixels stay in the
    denominator, as in the authors' code (no confidence threshold).
    """
    ce = F.cross_entropy(logits, target.long(), ignore_index=ignore_index, reduction="none")
    valid = (target != ignore_index).to(ce.dtype)
    return (ce * weight * valid).sum() / valid.sum().clamp(min=1)
