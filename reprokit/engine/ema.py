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
    for tb, sb in zip(teacher.buffers(), student.buffers()):
        if tb.dtype.is_floating_point:
            tb.mul_(momentum).add_(sb, alpha=1 - momentum)
        else:
            tb.copy_(sb)
