"""Exponential moving average of a student into its teacher (mean teacher)."""
from __future__ import annotations

import torch
from torch import nn


def _tensor_lists(teacher: nn.Module, student: nn.Module) -> tuple[list, list, list, list]:
    """(teacher floats, student floats, teacher ints, student ints): parameters and float buffers (BN
    running statistics) are averaged, integer buffers (BN batch counters) copied. Collected once per teacher,
    since walking the module tree every step is a noticeable share of the update (docs/measurements.md)."""
    cached = teacher.__dict__.get("_ema_lists")
    if cached is None or cached[0] is not student:
        t_all = [*teacher.parameters(), *teacher.buffers()]
        s_all = [*(p.detach() for p in student.parameters()), *student.buffers()]
        floats = [(t, s) for t, s in zip(t_all, s_all) if t.dtype.is_floating_point]
        ints = [(t, s) for t, s in zip(t_all, s_all) if not t.dtype.is_floating_point]
        lists = ([t for t, _ in floats], [s for _, s in floats], [t for t, _ in ints], [s for _, s in ints])
        teacher.__dict__["_ema_lists"] = cached = (student, lists)
    return cached[1]


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher <- momentum * teacher + (1 - momentum) * student (one fused lerp over all float tensors)."""
    t_float, s_float, t_int, s_int = _tensor_lists(teacher, student)
    torch._foreach_lerp_(t_float, s_float, 1 - momentum)
    for t, s in zip(t_int, s_int):
        t.copy_(s)
