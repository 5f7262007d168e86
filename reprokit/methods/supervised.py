"""Supervised baseline: one network, cross-entropy (or OHEM) on labeled images only (Table 4 row 1). On sparse
labels (points, scribbles, clicks) it is the partial cross-entropy baseline: the loss on the labeled pixels
alone."""
from __future__ import annotations

from reprokit.config import SPARSE_KINDS
from reprokit.methods.base import Method, MethodEntry, StepOutput
from reprokit.labels import IGNORE_INDEX
from reprokit.methods.losses import SupervisedParams, supervised_loss
from reprokit.models.deeplab import build_network


class Supervised(Method):
    Params = SupervisedParams
    label_kinds = ("dense",) + SPARSE_KINDS

    def __init__(self, cfg, params, num_classes):
        super().__init__(cfg, params, num_classes)
        self.net = build_network(cfg.model, num_classes)

    def students(self):
        return {"net": self.net}

    def eval_network(self):
        return self.net

    def training_step(self, labeled, unlabeled, step):
        logits = self.net(labeled["image"])
        return StepOutput({"sup": supervised_loss(logits, self.targets(labeled), self.params)})

    def targets(self, labeled: dict):
        """The labels the loss learns: the mask, or a sparse label with its unlabeled pixels ignored."""
        if "mask" in labeled:
            return labeled["mask"]
        sparse = labeled["sparse"]
        return sparse.masked_fill(sparse == self.num_classes, IGNORE_INDEX)

METHOD = MethodEntry("supervised", Supervised, "supervised", "table4-ls")
