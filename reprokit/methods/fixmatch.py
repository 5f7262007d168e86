"""FixMatch for segmentation (Table 4 context, Fig. 6 baseline): the student itself labels the weak
view without gradient, and learns the strong view (photometric + CutMix) on pixels whose confidence
reaches ``threshold`` (0.95). No EMA teacher."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reprokit.config import PROBABILITY, ranged
from reprokit.labels import IGNORE_INDEX
from reprokit.methods.base import MethodEntry, StepOutput
from reprokit.methods.losses import supervised_loss
from reprokit.methods.semi import (SemiParams, accuracy, cutmix_views, split_forward,
                                   teacher_targets, unsup_weight)
from reprokit.methods.supervised import Supervised


@dataclass
class FixMatchParams(SemiParams):
    name: str = "fixmatch"
    threshold: float = ranged(PROBABILITY, 0.95)


class FixMatch(Supervised):
    """One network (the supervised baseline's), plus the unlabeled step."""

    Params = FixMatchParams
    label_kinds = ("dense",)
    uses_unlabeled = True
    unlabeled_batches = 2

    def reads_hidden_masks(self) -> bool:
        return True  # accuracy of the kept pseudo-labels (diagnostics)

    def training_step(self, labeled, unlabeled, step):
        weight = unsup_weight(self, step)
        if weight == 0:  # burn-in: supervised only, no unlabeled passes
            return super().training_step(labeled, None, step)
        views = cutmix_views(unlabeled, self.params, self.cfg.train.seed, step)
        with torch.no_grad():
            conf, pseudo = teacher_targets(self.net(views.x_w).softmax(1), views)
        kept = conf >= self.params.threshold
        b = labeled["image"].shape[0]
        logits = split_forward(self.net, labeled["image"], views.x_s, self.params.strong_bn_update)
        ce = F.cross_entropy(logits[b:], pseudo, ignore_index=IGNORE_INDEX, reduction="none")
        counted = (pseudo != IGNORE_INDEX).sum().clamp(min=1)
        losses = {"sup": supervised_loss(logits[:b], labeled["mask"], self.params),
                  "unsup": weight * (ce * kept).sum() / counted}
        diagnostics = {"kept": (kept & views.valid).sum() / views.valid.sum().clamp(min=1)}
        if views.gt is not None:
            diagnostics["acc/kept"] = accuracy(pseudo, views.gt, kept & views.valid)
        return StepOutput(losses, diagnostics)

METHOD = MethodEntry("fixmatch", FixMatch, "FixMatch", "fixmatch-1_8")
