"""Forms of STPG's pieces that only the tests use: the memory bank read and written one class at a time."""
from __future__ import annotations

import torch

from reprokit.methods.stpg import MemoryBank


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
