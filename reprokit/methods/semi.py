"""Pieces every teacher-student method here shares: the CutMix strong view of two unlabeled batches,
gradient-free teacher targets mixed with the same boxes, and pseudo-label diagnostics.

The engine hands a method ``unlabeled`` batches of 2B images (``unlabeled_batches = 2``): u0 is the first
half, u1 the second. The strong view pastes boxes of u1's strong photometric view into u0's; teachers see
u0 and u1 unmixed in one forward, and their outputs are mixed with the same boxes (as in the STPG code).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from reprokit.config import FRACTION, NON_NEGATIVE, PROBABILITY, check_interval, chosen, ranged
from reprokit.data.transforms import cutmix_box_masks, mix
from reprokit.labels import IGNORE_INDEX
from reprokit.methods.base import StepOutput
from reprokit.methods.losses import SupervisedParams, supervised_loss
from reprokit.methods.teachers import EMATeachers


@dataclass
class SemiParams(SupervisedParams):
    """Settings shared by the teacher-student methods (paper defaults: STPG Section 4.1)."""

    # weight of the unsupervised loss (Eq. 17; Fig. 8b sweeps 0 / 0.5 / 1 / 1.5)
    lambda_u: float = ranged(NON_NEGATIVE, 1.0)
    # Burn-in: fraction of training with supervised loss only (0 = STPG paper and code: from the start).
    # Mean Teacher and FixMatch skip the unlabeled passes entirely during it.
    unsup_start: float = ranged(PROBABILITY, 0.0)
    # then lambda_u rises linearly over this fraction of training (0 = at once)
    unsup_ramp: float = ranged(PROBABILITY, 0.0)
    cutmix_boxes: int = ranged(NON_NEGATIVE, 3)  # 0 = no CutMix
    cutmix_area: list = ranged(FRACTION, factory=lambda: [0.25, 0.5])  # total box area, fraction of the image
    # False: strong-view passes normalise with their batch statistics but leave BN running statistics alone,
    # so the evaluated network's (and its EMA teacher's) statistics come from clean images only.
    # True = STPG/CPS code (every student pass updates them).
    strong_bn_update: bool = True

    def check(self) -> None:
        check_interval("method.cutmix_area", self.cutmix_area)


@dataclass
class TeacherParams(SemiParams):
    """Adds the EMA teachers' settings."""

    ema_momentum: float = ranged(PROBABILITY, 0.99)  # teacher = EMA of student (parameters and BN statistics)
    # min(ema_momentum, 1 - 1 / (t + 1)) at step t, as in Tarvainen & Valpola's Mean Teacher, so the teacher
    # is not dominated by its random initialisation; the STPG code uses a constant momentum (False).
    ema_warmup: bool = False
    teacher_train_mode: bool = False  # authors' STPG code runs teachers with batch BN statistics
    # network evaluated and exported: student (STPG paper and code) or teacher
    eval_net: str = chosen(("student", "teacher"), "student")


@dataclass
class MixedViews:
    """Unlabeled inputs of one step."""

    x_w: torch.Tensor  # [2B, 3, H, W] weak views of u0 and u1 (teacher input)
    x_s: torch.Tensor  # [B, 3, H, W] strong view: u0 with boxes pasted from u1
    box: torch.Tensor  # [B, H, W] True where x_s comes from u1
    valid: torch.Tensor  # [B, H, W] non-padding pixels of x_s
    # [B, H, W] hidden ground truth of x_s, for diagnostics (only Mean Teacher's oracle instrument trains on it)
    gt: Optional[torch.Tensor]

    def mixed(self, t: torch.Tensor) -> torch.Tensor:
        """Mix a per-image tensor computed on the 2B weak views with the strong view's boxes; views with one
        student input per teacher input (:func:`single_views`) pass it through unchanged."""
        b = self.box.shape[0]
        return t if t.shape[0] == b else mix(t[:b], t[b:], self.box)


def step_generator(seed: int, step: int) -> torch.Generator:
    """CPU generator for the step's CutMix boxes: a pure function of (seed, step, rank), so boxes are
    identical after a resume and differ across DDP ranks."""
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    return torch.Generator().manual_seed(((seed * 1_000_003 + step) * 1009 + rank) % (2 ** 63))


def cutmix_views(unlabeled: dict, params: SemiParams, seed: int, step: int) -> MixedViews:
    x_w, x_s = unlabeled["image"], unlabeled["image_s"]
    if x_w.shape[0] % 2:
        raise ValueError(f"unlabeled batch of {x_w.shape[0]} images cannot be split into u0 and u1")
    b, (h, w) = x_w.shape[0] // 2, x_w.shape[-2:]
    if params.cutmix_boxes:
        box = cutmix_box_masks(b, h, w, params.cutmix_boxes, params.cutmix_area,
                               generator=step_generator(seed, step), device=x_w.device)
    else:  # no mixing: the strong view is u0's photometric view
        box = torch.zeros(b, h, w, dtype=torch.bool, device=x_w.device)
    valid = mix(unlabeled["valid"][:b], unlabeled["valid"][b:], box)
    gt = unlabeled.get("hidden_mask")
    views = MixedViews(x_w, mix(x_s[:b], x_s[b:], box), box, valid, None)
    if gt is not None:
        views.gt = views.mixed(gt)
    return views


def single_views(unlabeled: dict) -> MixedViews:
    """Teacher and student see the same weak view of each unlabeled image (no pairing, no CutMix): the choice
    of CW-BASS's released code, offered as an option beside the weak/strong views of its description."""
    x_w = unlabeled["image"]
    box = torch.zeros(x_w.shape[0], *x_w.shape[-2:], dtype=torch.bool, device=x_w.device)
    return MixedViews(x_w, x_w, box, unlabeled["valid"], unlabeled.get("hidden_mask"))


@torch.no_grad()
def teacher_targets(probs: torch.Tensor, views: MixedViews) -> tuple[torch.Tensor, torch.Tensor]:
    """(confidence, pseudo-label) on the strong view from teacher probabilities on the 2B weak views;
    padding pixels get label 255 (ignored by every loss)."""
    conf, label = probs.max(1)
    conf, label = views.mixed(conf), views.mixed(label)
    return conf, label.masked_fill(~views.valid, IGNORE_INDEX)


def accuracy(pred: torch.Tensor, gt: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Share of pixels in ``where`` (and with known ground truth) where ``pred`` is right; NaN when none."""
    keep = where & (gt != IGNORE_INDEX)
    return ((pred == gt) & keep).sum() / keep.sum().to(torch.float32)


@contextmanager
def frozen_bn_statistics(net: nn.Module, frozen: bool = True):
    """Batch norm layers of ``net`` still normalise with batch statistics but do not update their running
    statistics (momentum 0) inside the block."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)] if frozen else []
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(bns, saved):
            m.momentum = momentum


def split_forward(net: nn.Module, x_l: torch.Tensor, x_s: torch.Tensor, strong_bn_update: bool = True, **kwargs):
    """A student on the labeled batch and on the strong view in two passes, outputs concatenated
    [labeled; strong]. Separate passes give each batch its own BN statistics, as the CPS/STPG code does;
    one joint batch normalises clean labeled images with statistics of strongly perturbed ones, which cost
    accuracy on the digit scenes (docs/measurements.md, "Statements moved from docstrings").
    ``strong_bn_update=False`` keeps the strong pass out of the running statistics."""
    a = net(x_l, **kwargs)
    with frozen_bn_statistics(net, not strong_bn_update):
        b = net(x_s, **kwargs)
    if isinstance(a, dict):
        return {k: torch.cat([a[k], b[k]]) for k in a}
    return torch.cat([a, b])


def unsup_weight(method, step: int) -> float:
    """0 during the burn-in (``unsup_start``), then lambda_u, reached linearly over ``unsup_ramp`` of training.
    Not in the STPG paper (its students start from ImageNet weights): an untrained teacher's first
    pseudo-labels are mostly background."""
    p = method.params
    if not method.phase(step, p.unsup_start):
        return 0.0
    ramp_steps = p.unsup_ramp * method.total_steps
    if ramp_steps <= 0:
        return p.lambda_u
    start = math.floor(p.unsup_start * method.total_steps)
    return p.lambda_u * min(1.0, (step - start + 1) / ramp_steps)


class TeacherStudent(EMATeachers):
    """Base of the semi-supervised methods with EMA teachers (:class:`EMATeachers`): unlabeled batches u0 and u1
    for the CutMix strong view, and a burn-in in which the first student learns from labeled images only."""

    uses_unlabeled = True
    unlabeled_batches = 2  # u0 and u1 for the CutMix strong view

    def reads_hidden_masks(self) -> bool:
        return True  # pseudo-label accuracy diagnostics

    def supervised_only(self, labeled: dict) -> StepOutput:
        """A burn-in step (``unsup_weight`` 0): the supervised loss of the first student, no unlabeled pass."""
        student = getattr(self, self.pairs[0][0])
        return StepOutput({"sup": supervised_loss(student(labeled["image"]), labeled["mask"], self.params)})

    def views(self, unlabeled: dict, step: int) -> MixedViews:
        return cutmix_views(unlabeled, self.params, self.cfg.train.seed, step)
