"""Supervised baseline: one network, cross-entropy (or OHEM) on labeled images only (Table 4 row 1)."""
from __future__ import annotations

from dataclasses import dataclass

from reprokit.config import COUNT, PROBABILITY, MethodParams, ranged
from reprokit.methods.base import Method, MethodEntry, StepOutput
from reprokit.methods.losses import supervised_loss
from reprokit.models.deeplab import build_network


@dataclass
class SupervisedParams(MethodParams):
    name: str = "supervised"
    ohem: bool = False  # OHEM cross-entropy (Cityscapes protocol)
    ohem_thresh: float = ranged(PROBABILITY, 0.7)
    ohem_min_kept: int = ranged(COUNT, 50000)  # per image


class Supervised(Method):
    Params = SupervisedParams

    def __init__(self, cfg, params, num_classes):
        super().__init__(cfg, params, num_classes)
        self.net = build_network(cfg.model, num_classes)

    def students(self):
        return {"net": self.net}

    def eval_network(self):
        return self.net

    def training_step(self, labeled, unlabeled, step):
        logits = self.net(labeled["image"])
        return StepOutput({"sup": supervised_loss(logits, labeled["mask"], self.params)})

METHOD = MethodEntry("supervised", Supervised, "supervised", "table4-ls")
