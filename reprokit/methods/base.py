"""The method contract: a method owns its networks and losses; the engine owns everything else.

A method is an ``nn.Module`` whose ``forward`` is the training step, so the engine can wrap it in
DistributedDataParallel as one unit. Teachers are registered with ``requires_grad=False`` and updated
by the engine through :meth:`Method.ema_pairs` after each optimiser step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import nn

from reprokit.config import Config


@dataclass
class StepOutput:
    """What a training step returns: named loss tensors (the engine sums them) and diagnostics
    (scalar tensors or floats, logged; never backpropagated)."""

    losses: dict[str, torch.Tensor]
    diagnostics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MethodEntry:
    """A method's registry entry, declared at the top level of its own module as ``METHOD = MethodEntry("name",
    ...)``: the code version reads that assignment from the source to find the module a run of the method
    starts from (:func:`reprokit.codeversion.method_modules`)."""

    name: str  # the config's ``method.name``
    cls: type  # the method, a :class:`Method`
    label: str  # its row in the summary tables and its bar in Fig. 6
    # its run at 1/8 labels on each data set, the config ``<data set>-<experiment>``; None: not in the comparison
    experiment: Optional[str] = None


class Method(nn.Module):
    """Every attribute and method the engine reads is declared here, with the value a plain supervised
    method needs; a method overrides what differs."""

    #: parameter dataclass of the method (validated from the ``method:`` block of the config)
    Params: type = None
    #: whether the method consumes unlabeled batches
    uses_unlabeled: bool = False
    #: unlabeled batches per step: the engine hands ``training_step`` this many times the unlabeled batch size
    unlabeled_batches: int = 1
    #: set when some trainable parameters may receive no gradient in a step (DDP needs to know)
    may_skip_params: bool = False
    #: whether labeled items carry a photometric strong view of their crop (``image_s``)
    labeled_strong_view: bool = False
    #: kinds of training label the method learns from (``data.label_kind``, reprokit.config.LABEL_KINDS);
    #: a run whose data has another kind is refused before training, naming both
    label_kinds: tuple[str, ...] = ("dense",)
    #: layers the inspector offers beside the base ones (maps of :meth:`pseudo_labels` beyond the base three)
    inspector_layers: tuple = ()  # of reprokit.methods.display layers

    def reads_hidden_masks(self) -> bool:
        """Whether the step's batches carry ``hidden_mask`` (the ground truth of unlabeled images, and of weakly
        labeled ones, for diagnostics only); the engine does not read those masks otherwise."""
        return False

    def __init__(self, cfg: Config, params: Any, num_classes: int):
        super().__init__()
        self.cfg, self.params, self.num_classes = cfg, params, num_classes
        self.total_steps = 1

    # --- the contract -------------------------------------------------------------------------
    def forward(self, labeled: dict, unlabeled: Optional[dict], step: int) -> StepOutput:
        return self.training_step(labeled, unlabeled, step)

    def training_step(self, labeled: dict, unlabeled: Optional[dict], step: int) -> StepOutput:
        raise NotImplementedError

    def students(self) -> dict[str, nn.Module]:
        """Trainable networks by role name (the optimiser's parameter groups come from these)."""
        raise NotImplementedError

    def ema_pairs(self) -> list[tuple[nn.Module, nn.Module, float]]:
        """(teacher, student, momentum) triples the engine updates after each optimiser step."""
        return []

    def ema_momentum(self, momentum: float, step: int) -> float:
        """Momentum of the EMA update after optimiser step ``step`` (0-based); constant unless a method
        warms it up."""
        return momentum

    def eval_network(self) -> nn.Module:
        """The network evaluated and exported."""
        raise NotImplementedError

    def other_protocols(self, protocol):
        """Evaluation protocols, besides the configured ``protocol`` (an EvalConfig), under which this method's
        papers report results: the final evaluation writes each to its own file."""
        return []

    def label_roles(self) -> tuple[nn.Module, nn.Module]:
        """(network that makes pseudo-labels, network that learns them); without a teacher, both are the
        evaluated network."""
        net = self.eval_network()
        return net, net

    @torch.no_grad()
    def pseudo_labels(self, batch: dict) -> dict[str, torch.Tensor]:
        """Per-pixel maps on ``batch["image"]`` for inspection: the teacher's label and confidence and the
        student's prediction. Call in eval mode (training mode would update BN statistics)."""
        teacher, student = self.label_roles()
        conf, label = teacher(batch["image"]).softmax(1).max(1)
        pred = label if student is teacher else student(batch["image"]).argmax(1)
        return {"teacher_label": label, "confidence": conf, "student_pred": pred}

    def set_total_steps(self, total: int) -> None:
        """Called once by the engine; methods with warm-up phases in fractions of training use it."""
        self.total_steps = max(total, 1)

    def phase(self, step: int, fraction: float) -> bool:
        """Whether ``step`` has reached ``fraction`` of training (warm-up phases are given as fractions)."""
        return step >= math.floor(fraction * self.total_steps)
