"""Forms of STPG's pieces that only the tests use: Eqs. 15 and 16 for a flat list of features (the training
step computes both at once on [B, D, P] projections, :func:`dual_contrastive_losses`), Eq. 16 from the list of
memory entries, and the memory bank read and written one class at a time."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from reprokit.methods.stpg import MemoryBank, anchor_contrastive_term, pixel_cosines, similarity_term


def anchor_contrastive_loss(features: torch.Tensor, labels: torch.Tensor, anchors: torch.Tensor,
                            assignment: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """Eq. 15 over features [N, D]: ``-log softmax_c(f . v_sigma(c) / tau)`` at the feature's class, f
    normalised; features labelled 255 left out."""
    return anchor_contrastive_term(pixel_cosines(features.T[None], anchors[assignment]), labels[None], tau)


def similarity_to_centres(features: torch.Tensor, labels: torch.Tensor, centres: torch.Tensor,
                          filled: torch.Tensor) -> torch.Tensor:
    """Eq. 16 over features [N, D] from each class's mean normalised entry [C, D] and which classes have
    entries [C] (what :meth:`MemoryBank.centres` returns)."""
    return similarity_term(pixel_cosines(features.T[None], centres), labels[None], filled)


def similarity_loss(features: torch.Tensor, labels: torch.Tensor, memory: list[torch.Tensor]) -> torch.Tensor:
    """Eq. 16 from the memory entries of each class: the mean of ``1 - cos(f, i+)`` over the class's entries
    equals ``1 -`` the cosine's numerator against their mean normalised entry; classes without entries
    contribute nothing."""
    centres = torch.stack([F.normalize(m.to(features.dtype), dim=1).mean(0) if len(m)
                           else features.new_zeros(features.shape[1]) for m in memory])
    filled = torch.tensor([len(m) > 0 for m in memory], device=features.device)
    return similarity_to_centres(features, labels, centres, filled)


def push(bank: MemoryBank, c: int, feats: torch.Tensor) -> None:
    """Append ``feats`` to class c's queue; the oldest entries beyond the bank's size drop out."""
    if bank.size == 0 or len(feats) == 0:
        return
    feats = feats[-bank.size:]
    device = bank.bank.device
    bank._append(torch.tensor([c], device=device), feats[None], torch.ones(1, len(feats), dtype=torch.bool,
                                                                          device=device))


def queue(bank: MemoryBank, c: int) -> torch.Tensor:
    """Class c's entries, oldest first, unrolled from the ring buffer."""
    n, start = int(bank.count[c]), int(bank.ptr[c])
    if n < bank.size:
        return bank.bank[c, :n]
    return torch.cat([bank.bank[c, start:], bank.bank[c, :start]])


def queues(bank: MemoryBank) -> list[torch.Tensor]:
    return [queue(bank, c) for c in range(bank.bank.shape[0])]
