"""STPG as a method: dual mean teacher with professional and general training (Section 3) and dual
contrastive learning with anchors (Section 3.3), assembled from the equation functions in
:mod:`reprokit.methods.stpg_equations` (re-exported here, so ``from reprokit.methods.stpg import
mismatch_scores`` keeps working).

One step, with u0/u1 the two unlabeled batches and x_s their CutMix strong view:
- teachers (no gradient, one batched forward each over u0 and u1) give pseudo-labels on x_s;
- professional module: the Pro-Student learns the Gen-Teacher's labels on the pixels kept by
  ``pixel_selection`` (Eqs. 2-7), weighted by the Gen-Teacher's confidence;
- general module: the Gen-Student learns all Pro-Teacher labels, confidence-weighted (Eqs. 8-11);
- dual contrastive learning on the Gen-Student's projections (Eqs. 12-16), after warm-up phases;
- total loss Eq. 17. The Gen-Student is evaluated.

Ablations are switches: ``dual_teacher: false`` keeps one student whose own EMA teacher plays both
teacher roles (Table 4 rows 4-5 without DM); ``pixel_selection`` any subset of cons/hmis/lmis (Table 5);
``contrastive: false`` or ``bank_size: 0`` removes DCL (Table 4, Fig. 8a); ``lambda_u`` (Fig. 8b).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reprokit.config import COUNT, NON_NEGATIVE, POSITIVE, PROBABILITY, ConfigError, chosen, ranged
from reprokit.labels import IGNORE_INDEX
from reprokit.methods.base import MethodEntry, StepOutput
from reprokit.methods.display import CategoryLayer
from reprokit.methods.losses import supervised_loss, weighted_ce
from reprokit.methods.semi import (MixedViews, TeacherParams, TeacherStudent, accuracy, split_forward,
                                   teacher_targets, unsup_weight)
from reprokit.methods.teachers import ema_copy
from reprokit.methods.stpg_equations import (CONTRASTIVE_REDUCTIONS, MATCHING_COSTS, SELECTION_CATEGORIES,
                                             MemoryBank, anchor_contrastive_loss, anchor_contrastive_term,
                                             anchor_uniformity_loss, dual_contrastive_losses, make_anchors,
                                             match_anchors, mismatch_scores, pixel_cosines, random_prototypes,
                                             select_pixels, similarity_loss, similarity_term, update_prototypes)
from reprokit.models.deeplab import build_network


__all__ = ["STPG", "STPGParams", "MemoryBank", "anchor_contrastive_term", "anchor_uniformity_loss",
           "dual_contrastive_losses", "make_anchors", "match_anchors", "mismatch_scores", "pixel_cosines",
           "select_pixels", "similarity_term", "update_prototypes", "weighted_ce", "SELECTION_CATEGORIES",
           "anchor_contrastive_loss", "similarity_loss"]

CATEGORIES = tuple(SELECTION_CATEGORIES)


@dataclass
class STPGParams(TeacherParams):
    name: str = "stpg"
    dual_teacher: bool = True  # Table 4 "DM"
    # Table 5; all three = no selection
    pixel_selection: list = chosen(CATEGORIES, factory=lambda: ["cons", "hmis"])
    # Eq. 5 as the authors' code computes it (one agreeing pixel per class added, scores normalised to sum 1),
    # or exactly as printed
    mismatch_score: str = chosen(("code", "eq5"), "code")
    contrastive: bool = True  # Table 4 "DCL"
    lambda_ctr: float = ranged(NON_NEGATIVE, 0.1)
    tau: float = ranged(POSITIVE, 0.5)  # temperature of Eqs. 12 and 15
    phi: float = ranged(PROBABILITY, 0.95)  # memory bank admission confidence
    alpha: float = ranged(PROBABILITY, 0.99)  # prototype EMA, Eq. 13 (authors' code: 0.9)
    prototype_unit: bool = False  # renormalise each updated prototype to length 1 (code)
    # what updates the prototypes: the Gen-Student's projections of every labeled pixel, starting from the
    # first batch's means (paper), or the bank teacher's correct and confident ones from bank_start on,
    # starting from random unit vectors (code)
    prototype_source: str = chosen(("gen_student", "bank_teacher"), "gen_student")
    anchor_matching: str = chosen(MATCHING_COSTS, "euclidean")  # Eq. 14's cost (code: cosine)
    # code: a class with one feature in its set (labeled or unlabeled) takes part in neither contrastive term,
    # one with a single memory entry in no similarity term
    contrastive_skips: bool = True
    contrastive_reduction: str = chosen(CONTRASTIVE_REDUCTIONS, "feature")  # Eqs. 15-16 per feature (code: class)
    bank_size: int = ranged(NON_NEGATIVE, 256)  # N per class; 0 removes contrastive learning (Fig. 8a)
    # features admitted per class and step; 0 = bank_size // labeled batch size
    bank_top_k: int = ranged(NON_NEGATIVE, 0)
    # teacher whose labeled-image features fill the bank (paper: gen; code: pro)
    bank_teacher: str = chosen(("gen", "pro"), "gen")
    proj_dim: int = ranged(COUNT, 256)
    # Warm-up phases, as fractions of training (the code's VOC epochs 5 / 10 / 15 of 32).
    bank_start: float = ranged(PROBABILITY, 0.15)
    contrastive_start: float = ranged(PROBABILITY, 0.3)
    proximity_start: float = ranged(PROBABILITY, 0.45)
    # stop re-matching prototypes to anchors after this fraction (code, VOC: 20/32)
    matching_freeze: float = ranged(PROBABILITY, 1.0)

    def check(self) -> None:
        super().check()
        if not self.pixel_selection:
            raise ConfigError(f"config key 'method.pixel_selection': expected a non-empty subset of "
                              f"{list(CATEGORIES)}, got []")
        if self.bank_teacher == "pro" and not self.dual_teacher:
            raise ConfigError("config key 'method.bank_teacher': 'pro' needs method.dual_teacher: true")


def at_feature_size(label: torch.Tensor, size) -> torch.Tensor:
    """Nearest-neighbour downsampling of a label map [B, H, W] to the projection's resolution."""
    return F.interpolate(label[:, None].float(), size=size, mode="nearest")[:, 0].long()


def pixels(t: torch.Tensor) -> torch.Tensor:
    """[B, D, h, w] -> [B*h*w, D]."""
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])


class STPG(TeacherStudent):
    Params = STPGParams
    pairs = (("gen_student", "gen_teacher"), ("pro_student", "pro_teacher"))  # general, professional module
    may_skip_params = True  # the projection head gets no gradient before contrastive_start
    # Eq. 6's categories of each pixel, as pseudo_labels returns them under "category": green, red, amber
    inspector_layers = (CategoryLayer("selection category", "category", tuple(SELECTION_CATEGORIES.values()),
                                      ((46, 160, 67), (214, 39, 40), (255, 187, 40))),)

    def __init__(self, cfg, params, num_classes):
        super().__init__(cfg, params, num_classes)
        proj = params.proj_dim if self.use_contrastive else 0
        self.gen_student = build_network(dataclasses.replace(cfg.model, proj_dim=proj), num_classes)
        self.gen_teacher = ema_copy(self.gen_student)
        if params.dual_teacher:
            pro_proj = proj if params.bank_teacher == "pro" else 0
            self.pro_student = build_network(dataclasses.replace(cfg.model, proj_dim=pro_proj), num_classes)
            self.pro_teacher = ema_copy(self.pro_student)
        if self.use_contrastive:
            self.register_buffer("anchors", make_anchors(num_classes, proj, params.tau, seed=cfg.train.seed))
            start = (random_prototypes(num_classes, proj, cfg.train.seed) if params.prototype_source == "bank_teacher"
                     else torch.zeros(num_classes, proj))
            self.register_buffer("prototypes", start)
            self.register_buffer("assignment", torch.arange(num_classes))
            self.bank = MemoryBank(num_classes, params.bank_size, proj)

    @property
    def use_contrastive(self) -> bool:
        return self.params.contrastive and self.params.bank_size > 0 and self.params.lambda_ctr > 0

    # --- roles ---------------------------------------------------------------------------------
    def active_pairs(self):
        """Both modules with the dual teacher; without it the general pair plays both (Table 4's rows)."""
        return self.pairs if self.params.dual_teacher else self.pairs[:1]

    def pro_roles(self):
        """(Pro-Student, Pro-Teacher); without the dual teacher the single pair plays both modules."""
        if self.params.dual_teacher:
            return self.pro_student, self.pro_teacher
        return self.gen_student, self.gen_teacher

    def label_roles(self):
        """The professional module's pair: Gen-Teacher labels, Pro-Student learns the selected pixels."""
        return self.gen_teacher, self.pro_roles()[0]

    @torch.no_grad()
    def pseudo_labels(self, batch):
        """Adds the selection category per pixel (0 consistent, 1 highly, 2 low mismatched, Eq. 6) and the
        batch's class mismatch scores (Eq. 5) to the base maps."""
        maps = super().pseudo_labels(batch)
        student, teacher = maps["student_pred"], maps["teacher_label"]
        scores = self.mismatch_scores(student, teacher, batch.get("valid"))
        _, hmis, lmis = select_pixels(student, teacher, scores)
        maps["category"] = (hmis.to(torch.uint8) + 2 * lmis.to(torch.uint8))
        maps["scores"] = scores
        return maps

    def mismatch_scores(self, student_pred, teacher_pred, valid):
        """Eq. 5 of the batch, in the form ``mismatch_score`` names."""
        code = self.params.mismatch_score == "code"
        return mismatch_scores(student_pred, teacher_pred, self.num_classes, valid=valid, prior_count=int(code),
                               normalise=code)

    # --- the step ------------------------------------------------------------------------------
    def training_step(self, labeled, unlabeled, step):
        p = self.params
        x_l, y_l = labeled["image"], labeled["mask"]
        b = x_l.shape[0]
        views = self.views(unlabeled, step)
        pro_teacher = self.pro_roles()[1]
        bank_net = self.gen_teacher if p.bank_teacher == "gen" else pro_teacher

        with torch.no_grad():  # gradient-free teacher passes, u0 and u1 (and x_l for the bank) batched
            bank_in = torch.cat([x_l, views.x_w]) if self.use_contrastive else views.x_w
            bank_out = bank_net(bank_in, return_features=True)
            bank_probs = bank_out["logits"].softmax(1)
            gen_probs = bank_probs[-views.x_w.shape[0]:] if bank_net is self.gen_teacher else \
                self.gen_teacher(views.x_w).softmax(1)
            pro_probs = bank_probs[-views.x_w.shape[0]:] if bank_net is pro_teacher else \
                pro_teacher(views.x_w).softmax(1)
            gen_conf, gen_label = teacher_targets(gen_probs, views)
            pro_conf, pro_label = teacher_targets(pro_probs, views)

        gen_out = split_forward(self.gen_student, x_l, views.x_s, p.strong_bn_update, return_features=True)
        gen_logits = gen_out["logits"]
        losses = {"sup_gen": supervised_loss(gen_logits[:b], y_l, p)}
        if p.dual_teacher:
            pro_logits = split_forward(self.pro_student, x_l, views.x_s, p.strong_bn_update)
            losses["sup_pro"] = supervised_loss(pro_logits[:b], y_l, p)
        else:
            pro_logits = gen_logits

        # Professional module (Eqs. 2-7): Gen-Teacher labels on the selected pixels.
        pro_pred = pro_logits[b:].detach().max(1).indices  # same as argmax, faster on CPU (docs/measurements.md)
        teacher_pred = torch.where(views.valid, gen_label, pro_pred)  # padding: no class, counts as agreement
        scores = self.mismatch_scores(pro_pred, teacher_pred, views.valid)
        masks = dict(zip(CATEGORIES, select_pixels(pro_pred, teacher_pred, scores)))
        selected = torch.zeros_like(views.valid)
        for name in p.pixel_selection:
            selected |= masks[name]
        lambda_u = unsup_weight(self, step)
        losses["pro"] = lambda_u * weighted_ce(pro_logits[b:], gen_label, gen_conf * selected)
        # General module (Eqs. 8-11): all Pro-Teacher labels.
        if p.dual_teacher:
            losses["gen"] = lambda_u * weighted_ce(gen_logits[b:], pro_label, pro_conf)

        diagnostics = self.selection_diagnostics(masks, scores, views, gen_label, pro_label)
        if self.use_contrastive:
            self.contrastive_step(step, gen_out["proj"], bank_out, bank_probs, y_l, pro_label, losses, diagnostics)
        return StepOutput(losses, diagnostics)

    def contrastive_step(self, step, proj, bank_out, bank_probs, y_l, pro_label, losses, diagnostics):
        """Dual contrastive learning (Eqs. 13-16) on the Gen-Student's projections of labeled pixels (ground
        truth) and strong-view pixels (Pro-Teacher labels); fills the memory bank from teacher features."""
        p, b = self.params, y_l.shape[0]
        size = proj.shape[-2:]
        y_small = at_feature_size(y_l, size)
        with torch.no_grad():
            if p.prototype_source == "gen_student":
                self.update_prototypes(pixels(proj[:b].detach()), y_small.reshape(-1))
            if p.prototype_source == "gen_student" or step == 0:
                self.rematch(step)
            if self.phase(step, p.bank_start):
                self.admit_to_bank(step, bank_out["proj"][:b], bank_probs[:b], y_small)
        diagnostics["bank_fill"] = self.bank.count.float().mean() / p.bank_size
        if self.phase(step, p.contrastive_start):
            labels = torch.cat([y_small, at_feature_size(pro_label, size)]).flatten(1)
            ac, sim = dual_contrastive_losses(proj.flatten(2), labels, self.anchors[self.assignment],
                                              *self.bank.centres(), p.tau, first_set=b,
                                              min_count=2 if p.contrastive_skips else 1,
                                              reduction=p.contrastive_reduction)
            losses["ac"], losses["sim"] = p.lambda_ctr * ac, p.lambda_ctr * sim

    def update_prototypes(self, feats, labels) -> None:
        """Eq. 13 with features [N, D] and their labels (255: left out)."""
        p = self.params
        self.prototypes.copy_(update_prototypes(self.prototypes, feats, labels, p.alpha, unit=p.prototype_unit))

    def rematch(self, step) -> None:
        """Eq. 14, every step until ``matching_freeze`` (and at step 0)."""
        if not self.phase(step, self.params.matching_freeze) or step == 0:
            self.assignment.copy_(match_anchors(self.prototypes, self.anchors, self.params.anchor_matching))

    def admit_to_bank(self, step, teacher_proj, teacher_probs, y_small):
        """Offers the bank teacher's projections of labeled pixels, with its prediction and confidence at the
        projection's resolution; with ``prototype_source: bank_teacher`` the pixels the bank accepts (correct
        and confident) also update the prototypes, before the top-K (the code's order)."""
        p = self.params
        probs = F.interpolate(teacher_probs, size=y_small.shape[-2:], mode="bilinear", align_corners=False)
        conf, pred = probs.max(1)
        feats, labels, pred, conf = pixels(teacher_proj), y_small.reshape(-1), pred.reshape(-1), conf.reshape(-1)
        if p.prototype_source == "bank_teacher":
            eligible = MemoryBank.eligible(labels, pred, conf, p.phi)
            self.update_prototypes(feats, labels.masked_fill(~eligible, IGNORE_INDEX))
            self.rematch(step)
        top_k = p.bank_top_k or max(1, p.bank_size // y_small.shape[0])
        anchors = self.anchors[self.assignment] if self.phase(step, p.proximity_start) else None
        self.bank.admit(feats, labels, pred, conf, p.phi, top_k, anchors)

    def selection_diagnostics(self, masks, scores, views: MixedViews, gen_label, pro_label) -> dict:
        """Selection ratios and per-class mismatch scores; with hidden ground truth, the accuracy of the
        Gen-Teacher's pseudo-labels in each category (the paper's claim: hmis is more often right than lmis)."""
        valid = views.valid & (gen_label != IGNORE_INDEX)
        n = valid.sum().clamp(min=1)
        diag = {f"sel/{k}": (m & valid).sum() / n for k, m in masks.items()}
        diag.update({f"mismatch/{c}": s for c, s in enumerate(scores)})
        if views.gt is not None:
            diag.update({f"acc/{k}": accuracy(gen_label, views.gt, m & valid) for k, m in masks.items()})
            diag["acc/gen_teacher"] = accuracy(gen_label, views.gt, valid)
            diag["acc/pro_teacher"] = accuracy(pro_label, views.gt, valid)
        return diag


METHOD = MethodEntry("stpg", STPG, "STPG", "table4-stpg")
