"""FARCLUSS (Tarubinga, Kalafatovich and Lee, "Fuzzy Adaptive Rebalancing and Contrastive Uncertainty Learning
for Semi-Supervised Semantic Segmentation", 2025) as a method: a mean teacher with four parts, each a switch.

The authors' code was not available when this was written, so every formula below is reprokit's reading of
the paper's one-paragraph description of the four parts (docs/farcluss.md):
1. ``fuzzy``: soft targets from the teacher's top-``top_k`` classes, renormalised (:func:`fuzzy_targets`);
   off: the teacher's hard top-1 label;
2. ``entropy_weighting``: per-pixel reliability 1 - H(p) / log C of the teacher's distribution
   (:func:`entropy_weights`); off: every pixel weighs 1;
3. ``rebalancing``: per-class loss weights (:func:`rebalance_weights`) from running pseudo-label class
   frequencies (:func:`update_class_frequencies`, a state of the method); off: every class weighs 1;
4. ``contrastive``: the student's decoder features are pulled toward their class prototype (a per-class EMA,
   the other state of the method) and the batch's class centroids are pushed apart (:func:`prototype_pull_loss`,
   :func:`centroid_push_loss`); C prototypes, no memory bank.
L = CE_sup + lambda_u * ramp * L_u + lambda_ctr * (L_pull + L_push), L_u = :func:`soft_weighted_ce`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reprokit.config import COUNT, NON_NEGATIVE, PROBABILITY, ConfigError, ranged
from reprokit.labels import IGNORE_INDEX
from reprokit.methods.base import MethodEntry, StepOutput
from reprokit.methods.display import CategoryLayer
from reprokit.methods.losses import supervised_loss
from reprokit.methods.semi import (MixedViews, TeacherParams, TeacherStudent, accuracy, split_forward,
                                   unsup_weight)
from reprokit.methods.teachers import ema_copy
from reprokit.methods.stpg_equations import class_means, update_prototypes
from reprokit.models.deeplab import build_network

#: bins of the inspector's two FARCLUSS layers (top-class mass of the fuzzy label, reliability weight)
LEVELS = (0.5, 0.7, 0.9)
LEVEL_NAMES = ("< 0.5", "0.5-0.7", "0.7-0.9", ">= 0.9")
LEVEL_COLOURS = ((214, 39, 40), (255, 127, 14), (255, 187, 40), (46, 160, 67))


def fuzzy_targets(probs: torch.Tensor, k: int) -> torch.Tensor:
    """FARCLUSS part 1 (reprokit's reading): each pixel's top-k probabilities of ``probs`` [B, C, H, W],
    renormalised to sum 1, zero on the other classes. k = 1 gives the one-hot hard pseudo-label."""
    top, idx = probs.topk(min(k, probs.shape[1]), dim=1)
    return torch.zeros_like(probs).scatter_(1, idx, top / top.sum(1, keepdim=True))


def entropy_weights(probs: torch.Tensor) -> torch.Tensor:
    """FARCLUSS part 2 (reprokit's reading): reliability 1 - H(p) / log C per pixel of ``probs`` [B, C, H, W],
    in [0, 1]: 1 for a one-hot distribution, 0 for the uniform one (0 log 0 counts 0)."""
    entropy = -torch.special.xlogy(probs, probs).sum(1)
    return (1 - entropy / torch.log(torch.tensor(float(probs.shape[1])))).clamp(0, 1)


def rebalance_weights(class_counts: torch.Tensor) -> torch.Tensor:
    """FARCLUSS part 3, reprokit's formula: w_c proportional to 1 / sqrt(f_c) of the class frequencies
    ``class_counts`` [C] (any scale), normalised to mean 1 over the classes that occur. The square root tempers
    plain inverse frequency, which on a background-dominated scene would weigh the rarest class hundreds of
    times the background. A class that does not occur gets the weight of the rarest one that does."""
    counts = class_counts.float()
    present = counts > 0
    inv = torch.where(present, counts.clamp(min=torch.finfo(counts.dtype).tiny).rsqrt(), torch.zeros_like(counts))
    inv = inv / (inv.sum() / present.sum().clamp(min=1)).clamp(min=torch.finfo(counts.dtype).tiny)
    rarest = torch.where(present.any(), inv.max(), counts.new_tensor(1.0))  # 1 for all: nothing seen yet
    return torch.where(present, inv, rarest)


def class_histogram(label: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Share of each class among the pixels of ``label`` that are not 255 ([C], zeros when none are)."""
    y = torch.where(label == IGNORE_INDEX, num_classes, label).reshape(-1).long()
    counts = torch.zeros(num_classes + 1, device=label.device).index_add_(0, y, torch.ones_like(y, dtype=torch.float))
    return counts[:num_classes] / counts[:num_classes].sum().clamp(min=1)


def update_class_frequencies(freq: torch.Tensor, label: torch.Tensor, momentum: float) -> torch.Tensor:
    """FARCLUSS part 3's running estimate (reprokit's smoothing): freq <- m freq + (1 - m) hist(label), the
    pseudo-label class shares of the batch; a batch without a valid pixel leaves it unchanged."""
    hist = class_histogram(label, freq.shape[0])
    return torch.where(hist.sum() > 0, momentum * freq + (1 - momentum) * hist, freq)


def soft_weighted_ce(logits: torch.Tensor, targets: torch.Tensor, pixel_weight: torch.Tensor,
                     class_weight: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """FARCLUSS's unsupervised loss (reprokit's assembly of parts 1-3): per pixel -sum_c w_c q_c log p_c with
    soft targets q [B, C, H, W] and class weights w [C], times the pixel's reliability, averaged over the
    ``valid`` pixels (0 when none are)."""
    log_p = F.log_softmax(logits.float(), dim=1)
    ce = -(class_weight.view(1, -1, 1, 1) * targets * log_p).sum(1)
    valid = valid.to(ce.dtype)
    return (ce * pixel_weight * valid).sum() / valid.sum().clamp(min=1)


def prototype_pull_loss(features: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """FARCLUSS part 4, pull (reprokit's reading): mean of 1 - cos(f, prototype of f's class) over the features
    [N, D] whose label [N] is a class with a prototype (non-zero row of ``prototypes`` [C, D]); 0 when none."""
    num_classes = prototypes.shape[0]
    known = (labels >= 0) & (labels < num_classes)
    y = torch.where(known, labels, 0).long()
    has_proto = prototypes.abs().sum(1) > 0
    use = (known & has_proto[y]).to(features.dtype)
    cos = (F.normalize(features, dim=1) * F.normalize(prototypes, dim=1)[y]).sum(1)
    return ((1 - cos) * use).sum() / use.sum().clamp(min=1)


def centroid_push_loss(centroids: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """FARCLUSS part 4, push (reprokit's reading): mean of max(0, cos) over the pairs of distinct classes
    present in the batch, for their normalised centroids [C, D]; pairs already at 90 degrees or more cost
    nothing. 0 with fewer than two classes."""
    pair = present[:, None] & present[None, :] & ~torch.eye(len(present), dtype=torch.bool, device=present.device)
    cos = F.normalize(centroids, dim=1) @ F.normalize(centroids, dim=1).T
    pair = pair.to(cos.dtype)
    return (cos.clamp(min=0) * pair).sum() / pair.sum().clamp(min=1)


def level(values: torch.Tensor) -> torch.Tensor:
    """Bin ids of ``values`` in [0, 1] by :data:`LEVELS` (the inspector's categories)."""
    return torch.bucketize(values, torch.tensor(LEVELS, device=values.device), right=True).to(torch.uint8)


@dataclass
class FARCLUSSParams(TeacherParams):
    name: str = "farcluss"
    fuzzy: bool = True  # part 1; False: hard top-1 pseudo-labels
    top_k: int = ranged(COUNT, 2)  # classes kept in a fuzzy label (docs/farcluss.md: why 2)
    entropy_weighting: bool = True  # part 2
    rebalancing: bool = True  # part 3
    frequency_momentum: float = ranged(PROBABILITY, 0.99)  # smoothing of the class-frequency estimate over steps
    contrastive: bool = True  # part 4
    lambda_ctr: float = ranged(NON_NEGATIVE, 0.1)
    prototype_momentum: float = ranged(PROBABILITY, 0.99)


class FARCLUSS(TeacherStudent):
    Params = FARCLUSSParams
    inspector_layers = (CategoryLayer("FARCLUSS top-class mass", "top_mass", LEVEL_NAMES, LEVEL_COLOURS),
                        CategoryLayer("FARCLUSS reliability weight", "reliability", LEVEL_NAMES, LEVEL_COLOURS))

    def __init__(self, cfg, params, num_classes):
        super().__init__(cfg, params, num_classes)
        if params.fuzzy and params.top_k < 2:
            raise ConfigError("config key 'method.top_k': a fuzzy label needs at least 2 classes "
                              "(method.fuzzy: false gives hard labels)")
        self.student = build_network(cfg.model, num_classes)
        self.teacher = ema_copy(self.student)
        self.register_buffer("class_freq", torch.full((num_classes,), 1.0 / num_classes))
        self.register_buffer("prototypes", torch.zeros(num_classes, cfg.model.decoder_channels))

    def soft_targets(self, probs: torch.Tensor) -> torch.Tensor:
        return fuzzy_targets(probs, self.params.top_k if self.params.fuzzy else 1)

    @torch.no_grad()
    def pseudo_labels(self, batch):
        """Adds the mass of the top class in the fuzzy label and the reliability weight, each in four bins."""
        maps = super().pseudo_labels(batch)
        probs = self.teacher(batch["image"]).softmax(1)
        maps["top_mass"] = level(self.soft_targets(probs).max(1).values)
        maps["reliability"] = level(entropy_weights(probs))
        return maps

    def training_step(self, labeled, unlabeled, step):
        p, b = self.params, labeled["image"].shape[0]
        weight = unsup_weight(self, step)
        if weight == 0:  # burn-in: supervised only, no unlabeled passes
            return self.supervised_only(labeled)
        views = self.views(unlabeled, step)
        with torch.no_grad():
            probs = views.mixed(self.teacher(views.x_w).softmax(1))
            targets = self.soft_targets(probs)
            reliability = entropy_weights(probs) if p.entropy_weighting else torch.ones_like(probs[:, 0])
            pseudo = probs.argmax(1).masked_fill(~views.valid, IGNORE_INDEX)
            if p.rebalancing:
                self.class_freq.copy_(update_class_frequencies(self.class_freq, pseudo, p.frequency_momentum))
            class_weight = rebalance_weights(self.class_freq) if p.rebalancing else torch.ones_like(self.class_freq)
        out = split_forward(self.student, labeled["image"], views.x_s, p.strong_bn_update,
                            return_features=p.contrastive)
        logits = out["logits"] if p.contrastive else out
        losses = {"sup": supervised_loss(logits[:b], labeled["mask"], p),
                  "unsup": weight * soft_weighted_ce(logits[b:], targets, reliability, class_weight, views.valid)}
        if p.contrastive:
            losses.update(self.contrastive_losses(out["features"], labeled["mask"], pseudo))
        return StepOutput(losses, self.diagnostics(views, targets, reliability, class_weight, pseudo))

    def contrastive_losses(self, features, y_l, pseudo) -> dict:
        """Part 4 on the student's decoder features at their resolution: labeled pixels with ground truth,
        strong-view pixels with the teacher's top-1 label; prototypes follow the labeled pixels only."""
        b, size = y_l.shape[0], features.shape[-2:]
        labels = F.interpolate(torch.cat([y_l, pseudo])[:, None].float(), size=size, mode="nearest")[:, 0].long()
        feats, flat = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1]), labels.reshape(-1)
        with torch.no_grad():
            n_l = b * size[0] * size[1]
            self.prototypes.copy_(update_prototypes(self.prototypes, feats[:n_l].detach(), flat[:n_l],
                                                    self.params.prototype_momentum))
        centroids, present = class_means(feats, flat, self.num_classes)
        lam = self.params.lambda_ctr
        return {"pull": lam * prototype_pull_loss(feats, flat, self.prototypes),
                "push": lam * centroid_push_loss(centroids, present)}

    def diagnostics(self, views: MixedViews, targets, reliability, class_weight, pseudo) -> dict:
        """Mean reliability weight and top-class mass, the class weights; with hidden ground truth, the accuracy
        of the top-1 pseudo-label and how often the true class is among the fuzzy label's classes."""
        valid = views.valid
        n = valid.sum().clamp(min=1)
        diag = {"entropy_weight": (reliability * valid).sum() / n,
                "top_mass": (targets.max(1).values * valid).sum() / n}
        diag.update({f"class_weight/{c}": w for c, w in enumerate(class_weight)})
        if views.gt is not None:
            known = views.gt != IGNORE_INDEX
            in_fuzzy = targets.gather(1, torch.where(known, views.gt, 0)[:, None])[:, 0] > 0
            diag["acc/teacher"] = accuracy(pseudo, views.gt, valid)
            diag["acc/in_fuzzy"] = (in_fuzzy & known & valid).sum() / (known & valid).sum().clamp(min=1)
        return diag

METHOD = MethodEntry("farcluss", FARCLUSS, "FARCLUSS", "farcluss-1_8")


__all__ = ["FARCLUSS", "FARCLUSSParams", "centroid_push_loss", "class_histogram", "entropy_weights",
           "fuzzy_targets", "prototype_pull_loss", "rebalance_weights", "soft_weighted_ce",
           "update_class_frequencies"]
