"""Mean Teacher (Table 4 row 2, "+L_u"): one student, its EMA teacher labels the CutMix strong view, and
the student learns every pseudo-label weighted by the teacher's confidence (Eq. 7 without selection).

``oracle: true`` is a headroom instrument, not a method: the hidden ground truth of the unlabeled images
replaces the teacher's labels (confidence 1) on exactly the same unsupervised path, which gives the upper
bound any pseudo-label method can reach under the protocol's views, schedule and weights.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from reprokit.labels import IGNORE_INDEX
from reprokit.methods.base import MethodEntry, StepOutput
from reprokit.methods.losses import supervised_loss, weighted_ce
from reprokit.methods.semi import (TeacherParams, TeacherStudent, accuracy, split_forward,
                                   teacher_targets, unsup_weight)
from reprokit.methods.teachers import ema_copy
from reprokit.models.deeplab import build_network


@dataclass
class MeanTeacherParams(TeacherParams):
    name: str = "mean_teacher"
    oracle: bool = False  # headroom instrument: train the unsupervised path on the hidden ground truth


class MeanTeacher(TeacherStudent):
    Params = MeanTeacherParams

    def __init__(self, cfg, params, num_classes):
        super().__init__(cfg, params, num_classes)
        self.student = build_network(cfg.model, num_classes)
        self.teacher = ema_copy(self.student)

    def training_step(self, labeled, unlabeled, step):
        p, b = self.params, labeled["image"].shape[0]
        weight = unsup_weight(self, step)
        if weight == 0:  # burn-in: supervised only, no unlabeled passes
            return self.supervised_only(labeled)
        views = self.views(unlabeled, step)
        with torch.no_grad():
            conf, pseudo = teacher_targets(self.teacher(views.x_w).softmax(1), views)
        diagnostics = {"confidence": conf[views.valid].mean()}
        if views.gt is not None:
            diagnostics["acc/teacher"] = accuracy(pseudo, views.gt, views.valid)
        if p.oracle:
            if views.gt is None:
                raise ValueError("method.oracle needs the hidden ground truth of the unlabeled images "
                                 "(masks present for the unlabeled split); this data set has none")
            pseudo, conf = views.gt.masked_fill(~views.valid, IGNORE_INDEX), torch.ones_like(conf)
        logits = split_forward(self.student, labeled["image"], views.x_s, p.strong_bn_update)
        losses = {"sup": supervised_loss(logits[:b], labeled["mask"], p),
                  "unsup": weight * weighted_ce(logits[b:], pseudo, conf)}
        return StepOutput(losses, diagnostics)

METHOD = MethodEntry("mean_teacher", MeanTeacher, "Mean Teacher", "table4-mt")
