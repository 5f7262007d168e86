"""CW-BASS (Tarubinga, Kalafatovich and Lee, "Confidence-Weighted Boundary-Aware Learning for Semi-Supervised
Semantic Segmentation", IJCNN 2025, arXiv:2502.15152) as a method: a mean teacher whose pseudo-labels are
filtered by a dynamic confidence threshold, learned with a confidence-weighted CE, plus a CE term on the
pseudo-labels' class boundaries.

Where a formula comes from: the paper's description as the authors' released code implements it (the numbers
are in ../shared/method-notes.md; docs/cw_bass.md says where paper, code and reprokit differ). One step:
- the EMA teacher (momentum 0.999) labels the unlabeled images; confidence c = its max softmax, optionally
  decayed (``confidence_decay``);
- pixels with c <= tau (:func:`dynamic_threshold`) are ignored (``dynamic_threshold: false`` keeps them all);
- L_cw = :func:`confidence_weighted_ce` over the kept pixels, L_b = plain CE over the kept pixels of the
  pseudo-label's boundary band (:func:`boundary_mask`, ``boundary: false`` removes it);
- L = CE_sup + lambda_u * ramp * (L_cw + ``boundary_weight`` * L_b), the ramp being the shared burn-in/ramp.
``views: strong`` (the description) gives the teacher the weak view and the student the strong one;
``views: single`` (the released code) gives both the same weak view.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reprokit.config import NON_NEGATIVE, PROBABILITY, chosen, ranged
from reprokit.labels import IGNORE_INDEX
from reprokit.methods.base import MethodEntry, StepOutput
from reprokit.methods.display import CategoryLayer
from reprokit.methods.losses import supervised_loss, weighted_ce
from reprokit.methods.semi import (MixedViews, TeacherParams, TeacherStudent, accuracy, single_views,
                                   split_forward, teacher_targets, unsup_weight)
from reprokit.methods.teachers import ema_copy
from reprokit.models.deeplab import build_network

VIEWS = ("strong", "single")
#: categories of the inspector's "CW-BASS pixel use" layer, by id
PIXEL_USE = ("kept", "kept, boundary band", "ignored (c <= tau)")


def dynamic_threshold(confidence: torch.Tensor) -> torch.Tensor:
    """tau = clamp(0.6 / (1 + exp(-0.5 (mean(c) - 0.5))), 0.3, 0.8), the mean over every element given
    (CW-BASS's dynamic threshold, as the released code computes it). Monotone in the mean confidence; for
    confidences in [0, 1] it only spans [0.30, 0.34], so the clamp's upper end is never reached."""
    return (0.6 * torch.sigmoid(0.5 * (confidence.float().mean() - 0.5))).clamp(0.3, 0.8)


def decayed_confidence(confidence: torch.Tensor, factor: float) -> torch.Tensor:
    """CW-BASS's optional confidence decay: the released code multiplies every confidence by one constant
    factor (0.9) when its flag is on; nothing in it changes with training progress."""
    return confidence * factor


def thresholded_labels(label: torch.Tensor, confidence: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """Pseudo-labels with every pixel of confidence <= tau set to 255 (CW-BASS keeps c > tau)."""
    return label.masked_fill(confidence <= tau, IGNORE_INDEX)


def confidence_weighted_ce(logits: torch.Tensor, target: torch.Tensor, confidence: torch.Tensor,
                           gamma: float = 1.0) -> torch.Tensor:
    """CW-BASS's confidence-weighted CE: sum(c^gamma * CE * valid) / sum(valid), valid = target != 255;
    0 when nothing is valid. Pixels the threshold removed carry 255 and so leave the denominator too (unlike
    Mean Teacher's weighting here, whose denominator keeps every pseudo-labeled pixel)."""
    return weighted_ce(logits, target, confidence.pow(gamma))


SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def boundary_mask(label: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Boundary band of a label map [B, H, W]: True where the 3x3 Sobel response (x or y, zero padding) of the
    one-hot label is non-zero for any class (CW-BASS's boundary-aware term). Pixels labeled 255 take part as no
    class (all-zero one-hot). For a square the band is its inner and outer one-pixel rings; with zero padding
    a class touching the image edge also gets a band along the edge."""
    b, h, w = label.shape
    onehot = torch.zeros(b, num_classes + 1, h, w, device=label.device)
    onehot.scatter_(1, label.long().clamp(max=num_classes).unsqueeze(1), 1.0)  # 255 -> spare channel, dropped
    kernels = torch.stack([SOBEL_X, SOBEL_X.T]).unsqueeze(1).to(label.device)  # [2, 1, 3, 3]: x and y
    response = F.conv2d(onehot[:, :num_classes].reshape(b * num_classes, 1, h, w), kernels, padding=1)
    return response.reshape(b, num_classes * 2, h, w).ne(0).any(1)


def boundary_ce(logits: torch.Tensor, target: torch.Tensor, band: torch.Tensor) -> torch.Tensor:
    """CW-BASS's boundary term: plain CE averaged over the valid (kept) pixels of the boundary band; 0 when
    there are none."""
    return weighted_ce(logits, target.masked_fill(~band, IGNORE_INDEX), torch.ones_like(band, dtype=logits.dtype))


@dataclass
class CWBASSParams(TeacherParams):
    name: str = "cw_bass"
    ema_momentum: float = ranged(PROBABILITY, 0.999)  # the released code's EMA
    # linear ramp of lambda_u over the first 5 of the code's 80 VOC epochs (paper cells set their own)
    unsup_ramp: float = ranged(PROBABILITY, 0.0625)
    gamma: float = ranged(NON_NEGATIVE, 1.0)  # exponent of the confidence weight
    dynamic_threshold: bool = True  # False: no pixel is ignored (ablation)
    boundary: bool = True  # the boundary-aware term
    boundary_weight: float = ranged(NON_NEGATIVE, 0.5)
    confidence_decay: bool = False  # off in the released code's default run
    decay_factor: float = ranged(PROBABILITY, 0.9)
    # strong: teacher weak / student strong (description); single: same view (code)
    views: str = chosen(VIEWS, "strong")


class CWBASS(TeacherStudent):
    Params = CWBASSParams
    inspector_layers = (CategoryLayer("CW-BASS pixel use", "use", PIXEL_USE,
                                      ((46, 160, 67), (31, 119, 180), (214, 39, 40))),)

    def __init__(self, cfg, params, num_classes):
        super().__init__(cfg, params, num_classes)
        self.student = build_network(cfg.model, num_classes)
        self.teacher = ema_copy(self.student)

    @property
    def unlabeled_batches(self) -> int:
        """Two batches (u0, u1) for the CutMix strong view; one when teacher and student share the view."""
        return 1 if self.params.views == "single" else 2

    def views(self, unlabeled: dict, step: int) -> MixedViews:
        return single_views(unlabeled) if self.params.views == "single" else super().views(unlabeled, step)

    def targets(self, confidence: torch.Tensor, label: torch.Tensor, valid: torch.Tensor):
        """(loss weights: the confidence after the optional decay, threshold, kept pseudo-labels, boundary band)
        of one batch of teacher outputs. The threshold is taken over the valid pixels and filters on the
        confidence before the decay, which reaches the loss weights only (the authors' code); the band comes
        from the labels before the threshold."""
        p = self.params
        tau = dynamic_threshold(confidence[valid]) if p.dynamic_threshold else confidence.new_tensor(0.0)
        kept = thresholded_labels(label, confidence, tau) if p.dynamic_threshold else label
        weights = decayed_confidence(confidence, p.decay_factor) if p.confidence_decay else confidence
        return weights, tau, kept, boundary_mask(label, self.num_classes)

    @torch.no_grad()
    def pseudo_labels(self, batch):
        """Adds which pixels the loss uses: kept, kept on the boundary band, ignored by the threshold."""
        maps = super().pseudo_labels(batch)
        valid = batch.get("valid", torch.ones_like(maps["confidence"], dtype=torch.bool))
        label = maps["teacher_label"].masked_fill(~valid, IGNORE_INDEX)
        _, _, kept, band = self.targets(maps["confidence"], label, valid)
        use = torch.full_like(label, 2, dtype=torch.uint8)
        use[kept != IGNORE_INDEX] = 0
        use[(kept != IGNORE_INDEX) & band] = 1
        maps["use"] = use
        return maps

    def training_step(self, labeled, unlabeled, step):
        p, b = self.params, labeled["image"].shape[0]
        weight = unsup_weight(self, step)
        if weight == 0:  # burn-in: supervised only, no unlabeled passes
            return self.supervised_only(labeled)
        views = self.views(unlabeled, step)
        with torch.no_grad():
            conf, pseudo = teacher_targets(self.teacher(views.x_w).softmax(1), views)
            conf, tau, kept, band = self.targets(conf, pseudo, views.valid)
        logits = split_forward(self.student, labeled["image"], views.x_s, p.strong_bn_update)
        unsup = confidence_weighted_ce(logits[b:], kept, conf, p.gamma)
        if p.boundary:
            unsup = unsup + p.boundary_weight * boundary_ce(logits[b:], kept, band)
        losses = {"sup": supervised_loss(logits[:b], labeled["mask"], p), "unsup": weight * unsup}
        return StepOutput(losses, self.diagnostics(views, conf, tau, pseudo, kept, band))

    def diagnostics(self, views: MixedViews, conf, tau, pseudo, kept, band) -> dict:
        """Share of pixels kept and on the kept boundary band, the threshold, the mean confidence; with hidden
        ground truth, pseudo-label accuracy on all, kept, ignored and boundary pixels."""
        n = views.valid.sum().clamp(min=1)
        is_kept = (kept != IGNORE_INDEX) & views.valid
        diag = {"kept": is_kept.sum() / n, "boundary": (is_kept & band).sum() / n, "threshold": tau,
                "confidence": conf[views.valid].mean()}
        if views.gt is not None:
            diag.update({"acc/teacher": accuracy(pseudo, views.gt, views.valid),
                         "acc/kept": accuracy(pseudo, views.gt, is_kept),
                         "acc/ignored": accuracy(pseudo, views.gt, views.valid & ~is_kept),
                         "acc/boundary": accuracy(pseudo, views.gt, is_kept & band)})
        return diag

METHOD = MethodEntry("cw_bass", CWBASS, "CW-BASS", "cw_bass-1_8")


__all__ = ["CWBASS", "CWBASSParams", "boundary_ce", "boundary_mask", "confidence_weighted_ce",
           "decayed_confidence", "dynamic_threshold", "thresholded_labels"]
