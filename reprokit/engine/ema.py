"""Exponential moving average of a student into its teacher (mean teacher)."""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher <- momentum * teacher + (1 - momentum) * student, for parameters and float buffers
    (BN running statistics, so the teacher can run in eval mode); integer buffers are copied."""
    t_params = [p for p in teacher.parameters()]
    s_params = [p.detach() for p in student.parameters()]
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, s_params, alpha=1 - momentum)
    pairs = list(zip(teacher.buffers(), student.buffers()))
    floats = [(t, s) for t, s in pairs if t.dtype.is_floating_point]
    if floats:
        t_bufs, s_bufs = [t for t, _ in floats], [s for _, s in floats]
        torch._foreach_mul_(t_bufs, momentum)
        torch._foreach_add_(t_bufs, s_bufs, alpha=1 - momentum)
    for t, s in pairs:
        if not t.dtype.is_floating_point:
            t.copy_(s)
