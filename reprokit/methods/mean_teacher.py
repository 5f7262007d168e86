"""Mean Teacher (Table 4 row 2, "+L_u"): one student, its EMA teacher labels the CutMix strong view, and
the student learns every pseudo-label weighted by the teacher's confidence (Eq. 7 without selection)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from reprokit.methods.base import StepOutput
from reprokit.methods.losses import supervised_loss
from reprokit.methods.semi import (TeacherParams, TeacherStudent, accuracy, ema_copy, split_forward,
                                   teacher_targets, unsup_weight)
from reprokit.methods.stpg import weighted_ce
from reprokit.models.deeplab import build_model


@dataclass
class MeanTeacherParams(TeacherParams):
    name: str = "mean_teacher"


class MeanTeacher(TeacherStudent):
    Params = MeanTeacherParams

    def __init__(self, cfg, params, num_classes):
        super().__init__(cfg, params, num_classes)
        self.student = build_model(cfg.model, num_classes)
        self.teacher = ema_copy(self.student)

    def students(self):
        return {"student": self.student}

    def ema_pairs(self):
        return [(self.teacher, self.student, self.params.ema_momentum)]

    def eval_network(self):
        return self.student

    def label_roles(self):
        return self.teacher, self.student

    def training_step(self, labeled, unlabeled, step):
        views = self.views(unlabeled, step)
        with torch.no_grad():
            conf, pseudo = teacher_targets(self.teacher(views.x_w).softmax(1), views)
        b = labeled["image"].shape[0]
        logits = split_forward(self.student, labeled["image"], views.x_s)
        losses = {"sup": supervised_loss(logits[:b], labeled["mask"], self.params),
                  "unsup": unsup_weight(self, step) * weighted_ce(logits[b:], pseudo, conf)}
        diagnostics = {"confidence": conf[views.valid].mean()}
        if views.gt is not None:
            diagnostics["acc/teacher"] = accuracy(pseudo, views.gt, views.valid)
        return StepOutput(losses, diagnostics)
