"""SGD with parameter groups (backbone / head, decay / no decay) and the poly learning-rate schedule."""
from __future__ import annotations

import torch
from torch import nn

from reprokit.config import OptimConfig


def param_groups(students: dict[str, nn.Module], cfg: OptimConfig) -> list[dict]:
    """Four groups: backbone or head x weight decay or not. Norm weights and biases (ndim <= 1) get no
    decay; head parameters (everything outside a network's ``backbone``) get ``lr * head_lr_mult``."""
    buckets = {(h, d): [] for h in (False, True) for d in (False, True)}
    for net in students.values():
        backbone = {id(p) for p in net.backbone.parameters()} if hasattr(net, "backbone") else set()
        for p in net.parameters():
            if p.requires_grad:
                buckets[(id(p) not in backbone, p.ndim > 1)].append(p)
    groups = []
    for (is_head, decay), params in buckets.items():
        if params:
            groups.append({"params": params, "lr": cfg.lr * (cfg.head_lr_mult if is_head else 1.0),
                           "weight_decay": cfg.weight_decay if decay else 0.0,
                           "name": f"{'head' if is_head else 'backbone'}{'' if decay else '_nodecay'}"})
    return groups


def build_optimizer(students: dict[str, nn.Module], cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(param_groups(students, cfg), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


def poly_factor(step: int, total: int, power: float) -> float:
    """(1 - step / total) ** power, the poly decay used by DeepLab and every method here."""
    return max(0.0, 1.0 - step / total) ** power


def poly_scheduler(optimizer: torch.optim.Optimizer, total: int, power: float) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: poly_factor(s, total, power))
