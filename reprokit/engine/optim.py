"""SGD or AdamW with parameter groups (backbone / head, decay / no decay) and the poly learning-rate schedule
with an optional linear warm-up."""
from __future__ import annotations

import torch
from torch import nn

from reprokit.config import OptimConfig


def param_groups(students: dict[str, nn.Module], cfg: OptimConfig) -> list[dict]:
    """Four groups: backbone or head x weight decay or not. Norm weights and biases (ndim <= 1) get no
    decay unless ``decay_norms``; head parameters (everything outside a network's ``backbone``) get
    ``lr * head_lr_mult``."""
    buckets = {(h, d): [] for h in (False, True) for d in (False, True)}
    for net in students.values():
        backbone = {id(p) for p in net.backbone.parameters()} if hasattr(net, "backbone") else set()
        for p in net.parameters():
            if p.requires_grad:
                buckets[(id(p) not in backbone, p.ndim > 1 or cfg.decay_norms)].append(p)
    groups = []
    for (is_head, decay), params in buckets.items():
        if params:
            groups.append({"params": params, "lr": cfg.lr * (cfg.head_lr_mult if is_head else 1.0),
                           "weight_decay": cfg.weight_decay if decay else 0.0,
                           "name": f"{'head' if is_head else 'backbone'}{'' if decay else '_nodecay'}"})
    return groups


def build_optimizer(students: dict[str, nn.Module], cfg: OptimConfig) -> torch.optim.Optimizer:
    if cfg.name == "adamw":
        return torch.optim.AdamW(param_groups(students, cfg), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)
    return torch.optim.SGD(param_groups(students, cfg), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


def poly_factor(step: int, total: int, power: float) -> float:
    """(1 - step / total) ** power, the poly decay used by DeepLab and every method here."""
    return max(0.0, 1.0 - step / total) ** power


WARMUP_START = 1e-6  # the warm-up's first factor of the rate


def warmup_factor(step: int, warmup: int) -> float:
    """Linear from ``WARMUP_START`` at step 0 to 1 at step ``warmup`` (1 from there on, and with no warm-up)."""
    return 1.0 if step >= warmup else WARMUP_START + (1.0 - WARMUP_START) * step / warmup


def poly_scheduler(optimizer: torch.optim.Optimizer, total: int, power: float,
                   warmup: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """Poly decay over the whole schedule, times the linear warm-up over its first ``warmup`` steps."""
    if not warmup:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: poly_factor(s, total, power))
    return torch.optim.lr_scheduler.LambdaLR(optimizer,
                                             lambda s: poly_factor(s, total, power) * warmup_factor(s, warmup))
