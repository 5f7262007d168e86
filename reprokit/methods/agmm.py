"""AGMM-SASS (Wu, Zhong, Fang, He, Liu, Ma and Chen, "Sparsely Annotated Semantic Segmentation with Adaptive
Gaussian Mixtures", CVPR 2023) as a method: one network trained on sparse labels (points, scribbles, clicks).
The labeled pixels of each image become class prototypes in the decoder's feature space; how close every
pixel's feature lies to each prototype gives a Gaussian response that supervises the unlabeled pixels, while
the sparse labels pull the response of the labeled ones towards their class.

Where a formula comes from: the paper's description, with the details its authors' released code fixes
(../shared/method-notes.md; docs/agmm.md lists every difference). One step on B sparsely labeled crops:
- one forward pass: logits at input resolution and the decoder feature f at 1/4 resolution;
- L_seg = CE over the labeled pixels (:func:`sparse_ce`);
- prototypes mu_{b,k}: mean of f, upsampled to the label's size, over image b's labeled pixels of class k
  (:func:`class_prototypes`);
- r_{b,k}(x) = exp(-d^2), d = mean over channels of |f(x) - mu_{b,k}| on the 1/4 grid, 0 for the classes
  with no labeled pixel in the crop (:func:`gmm_response`), then upsampled bilinearly to the logits' size;
- L_gmm = BCE(softmax(logits), r) / 2 over non-padding pixels (:func:`gmm_prediction_loss`)
  + BCE(r, one-hot sparse label) / 2 over labeled pixels (:func:`gmm_label_loss`); nothing detached;
- L_proto = mean over pairs of the batch's classes of exp(-(mean |v_i - v_j|)^2), v_k the batch-level class
  vector (:func:`class_vectors`, :func:`prototype_separation_loss`);
- L_cls = sum over the image's absent classes of -log(1 - p_k), averaged over non-padding pixels
  (:func:`absent_class_loss`; in the released code, not in the paper);
- L = w_seg L_seg + w_gmm L_gmm + w_proto L_proto + w_cls L_cls, each term with its switch.

Label encoding of the batch: ``sparse`` holds a class id at labeled pixels, C (``num_classes``) at unlabeled
pixels and 255 at padding, as the authors' code reads its label files.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reprokit.config import NON_NEGATIVE, ConfigError, MethodParams, chosen, ranged
from reprokit.labels import IGNORE_INDEX
from reprokit.methods.base import Method, MethodEntry, StepOutput
from reprokit.methods.display import CategoryLayer, HeatLayer, LabelLayer
from reprokit.methods.losses import weighted_ce
from reprokit.methods.semi import accuracy
from reprokit.models.deeplab import build_network

#: inside the logarithms of the BCE halves and of L_cls, as in the authors' code
EPS = 1e-6
#: how the batch-level class vector of L_proto is formed from the per-image prototypes
CLASS_VECTORS = ("mean", "sum")

#: the inspector's "AGMM: GMM vs network" categories, by id
AGREEMENT = ("sparse label", "GMM agrees with network", "GMM disagrees with network", "no GMM response")
AGREEMENT_COLOURS = ((255, 255, 255), (46, 160, 67), (214, 39, 40), (127, 127, 127))
#: bin edges and names of the inspector's "AGMM: max GMM response" layer
RESPONSE_LEVELS = (0.25, 0.5, 0.75)
RESPONSE_NAMES = ("< 0.25", "0.25-0.5", "0.5-0.75", ">= 0.75")
RESPONSE_COLOURS = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (253, 231, 37))


def labeled_onehot(sparse: torch.Tensor, num_classes: int) -> torch.Tensor:
    """One-hot [B, C, H, W] (float) of the labeled pixels of a sparse label map [B, H, W]: 1 at (b, k, x)
    where the label is class k < C; all zero at unlabeled (value C) and padding (255) pixels."""
    b, h, w = sparse.shape
    onehot = torch.zeros(b, num_classes + 1, h, w, device=sparse.device)
    onehot.scatter_(1, sparse.long().clamp(0, num_classes).unsqueeze(1), 1.0)  # C and 255 -> spare channel
    return onehot[:, :num_classes]


def sparse_ce(logits: torch.Tensor, sparse: torch.Tensor, num_classes: int) -> torch.Tensor:
    """L_seg: cross-entropy averaged over the labeled pixels of ``sparse``; unlabeled (C) and padding (255)
    pixels are ignored, as the authors' code maps value C to its ignore index. 0 when nothing is labeled."""
    target = sparse.long().masked_fill(sparse >= num_classes, IGNORE_INDEX)
    return weighted_ce(logits, target, torch.ones_like(target, dtype=logits.dtype))


def class_prototypes(features: torch.Tensor, sparse: torch.Tensor, num_classes: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image class prototypes ([B, C, D], zero for absent classes) and which exist ([B, C] bool).

    mu_{b,k} = mean of ``features`` [B, D, H, W] over image b's pixels labeled k in ``sparse`` [B, H, W]
    (the paper's prototypes: labeled pixels as Gaussian centroids). The authors' code computes them on the
    decoder feature upsampled to the label's size; the caller does that upsampling."""
    if features.shape[-2:] != sparse.shape[-2:]:
        raise ValueError(f"class_prototypes: features {tuple(features.shape)} and sparse labels "
                         f"{tuple(sparse.shape)} differ in size")
    onehot = labeled_onehot(sparse, num_classes).to(features.dtype)
    count = onehot.sum((2, 3))
    total = torch.einsum("bkhw,bdhw->bkd", onehot, features)
    return total / count.clamp(min=1).unsqueeze(-1), count > 0


def gmm_response(features: torch.Tensor, prototypes: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """The adaptive GMM's response [B, C, H, W]: r_{b,k}(x) = exp(-d^2) with d = mean over the D channels of
    |f(x) - mu_{b,k}|, and 0 for the classes not ``present`` in image b (the paper's Gaussian with the
    labeled pixels as centroids; the L1 distance and unit variance are the released code's). The distance
    is an L1 ``cdist``, so the [B, C, D, H, W] difference is not kept from the forward to the backward pass."""
    b, d, h, w = features.shape
    dist = torch.cdist(features.flatten(2).transpose(1, 2), prototypes, p=1) / d  # [B, HW, C]
    response = torch.exp(-dist.square()) * present.unsqueeze(1).to(dist.dtype)
    return response.transpose(1, 2).reshape(b, -1, h, w)


def binary_ce(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Element-wise -(t log(p + eps) + (1 - t) log(1 - p + eps)), eps = 1e-6 (the BCE of L_gmm as the
    authors' code writes it: either argument may carry gradient)."""
    return -(target * torch.log(pred + EPS) + (1 - target) * torch.log(1 - pred + EPS))


def mean_over_classes(per_class: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, H, W]: the mean over each image's ``present`` classes (0 where it has none); the
    released code averages the per-class BCE of L_gmm over the classes of the crop this way."""
    weight = present.to(per_class.dtype)[..., None, None]
    return (per_class * weight).sum(1) / weight.sum(1).clamp(min=1)


def masked_mean(values: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the pixels ``where`` is True; 0 when there are none (no host round trip)."""
    weight = where.to(values.dtype)
    return (values * weight).sum() / weight.sum().clamp(min=1)


def gmm_prediction_loss(probs: torch.Tensor, response: torch.Tensor, present: torch.Tensor,
                        valid: torch.Tensor) -> torch.Tensor:
    """First half of L_gmm: BCE(softmax(pred), r) / 2, averaged over the crop's classes, then over the
    ``valid`` (non-padding) pixels, labeled or not: the GMM supervises the unlabeled pixels. ``response``
    is r at the prediction's size; it is not detached (the released code trains the features through it)."""
    return masked_mean(mean_over_classes(binary_ce(probs, response), present), valid) / 2


def gmm_label_loss(response: torch.Tensor, sparse: torch.Tensor, present: torch.Tensor,
                   num_classes: int) -> torch.Tensor:
    """Second half of L_gmm: BCE(r, one-hot sparse label) / 2, averaged over the crop's classes, then over
    the labeled pixels: the sparse labels pull r to 1 for their class and to 0 for the crop's other classes."""
    per_class = binary_ce(response, labeled_onehot(sparse, num_classes).to(response.dtype))
    return masked_mean(mean_over_classes(per_class, present), sparse < num_classes) / 2


def class_vectors(prototypes: torch.Tensor, present: torch.Tensor, reduction: str = "mean"
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch-level class vectors v_k ([C, D]) and which classes the batch has ([C] bool), from the per-image
    prototypes [B, C, D] of the images where class k is ``present``.

    ``mean`` averages them (the paper's class representation); ``sum`` adds them, which is what the released
    code computes (it multiplies the sum by the image count and divides by the same count plus 1e-6)."""
    if reduction not in CLASS_VECTORS:
        raise ValueError(f"class_vectors: reduction must be one of {list(CLASS_VECTORS)}, got {reduction!r}")
    weight = present.to(prototypes.dtype).unsqueeze(-1)
    total, count = (prototypes * weight).sum(0), weight.sum(0)
    vectors = total / count.clamp(min=1) if reduction == "mean" else total
    return vectors, count.squeeze(-1) > 0


def prototype_separation_loss(vectors: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """L_proto: the mean over unordered pairs of distinct ``present`` classes of exp(-(mean_c |v_i - v_j|)^2),
    the GMM's response of one class vector to another, which training pushes apart (the paper's contrastive
    term between class distributions, as the released code computes it). 0 with fewer than two classes."""
    sim = torch.exp(-(vectors[:, None] - vectors[None]).abs().mean(-1).square())
    pairs = torch.triu(present[:, None] & present[None], diagonal=1).to(sim.dtype)
    return (sim * pairs).sum() / pairs.sum().clamp(min=1)


def absent_class_loss(probs: torch.Tensor, image_classes: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """L_cls: at each pixel the sum over the image's absent classes (``image_classes`` [B, C] False) of
    -log(1 - p_k + 1e-6), averaged over the ``valid`` pixels, labeled or not (the released code's class
    loss, added after the paper: a class missing from an image's sparse label may not be predicted in it)."""
    absent = (~image_classes.bool()).to(probs.dtype)[..., None, None]
    return masked_mean((-torch.log(1 - probs + EPS) * absent).sum(1), valid)


def response_levels(response: torch.Tensor) -> torch.Tensor:
    """Bin ids (uint8) of responses in [0, 1] by :data:`RESPONSE_LEVELS` (the inspector's categories)."""
    edges = torch.tensor(RESPONSE_LEVELS, device=response.device, dtype=response.dtype)
    return torch.bucketize(response, edges, right=True).to(torch.uint8)


@dataclass
class AGMMParams(MethodParams):
    name: str = "agmm"
    # one switch and one weight per term: an ablation row is one params file
    seg: bool = True
    gmm: bool = True
    proto: bool = True
    cls: bool = True  # in the released code, not in the paper
    seg_weight: float = ranged(NON_NEGATIVE, 1.0)
    gmm_weight: float = ranged(NON_NEGATIVE, 1.0)
    proto_weight: float = ranged(NON_NEGATIVE, 1.0)
    cls_weight: float = ranged(NON_NEGATIVE, 1.0)
    # L_proto's batch-level class vector: mean (paper) | sum (released code)
    class_vector: str = chosen(CLASS_VECTORS, "mean")

    def check(self) -> None:
        if not (self.seg or self.gmm or self.proto or self.cls):
            raise ConfigError("method agmm: every loss term is switched off (method.seg, gmm, proto, cls)")


class AGMM(Method):
    Params = AGMMParams
    label_kinds = ("points", "scribbles", "clicks")
    inspector_layers = (CategoryLayer("AGMM: GMM vs network", "gmm_agreement", AGREEMENT, AGREEMENT_COLOURS),
                        CategoryLayer("AGMM: max GMM response", "gmm_level", RESPONSE_NAMES, RESPONSE_COLOURS),
                        LabelLayer("AGMM: GMM pseudo-label", "gmm_label"),
                        HeatLayer("AGMM: max GMM response (heat)", "gmm_response"),
                        HeatLayer("AGMM: GMM response per class", "gmm", per_class=True))

    def __init__(self, cfg, params, num_classes):
        super().__init__(cfg, params, num_classes)
        self.net = build_network(cfg.model, num_classes)

    @property
    def may_skip_params(self) -> bool:
        """With only L_proto on, the classifier receives no gradient."""
        return not (self.params.seg or self.params.gmm or self.params.cls)

    def reads_hidden_masks(self) -> bool:
        """The diagnostics compare the GMM's pseudo-labels with the hidden dense masks of the sparsely
        labeled images (``labeled["hidden_mask"]``) when the batch carries them."""
        return True

    def students(self):
        return {"net": self.net}

    def eval_network(self):
        return self.net

    def responses(self, features: torch.Tensor, sparse: torch.Tensor, size) -> tuple:
        """(prototypes, presence, r upsampled bilinearly to ``size``) of one batch: prototypes from the
        feature upsampled to the label's size, distances on the feature's own 1/4 grid (released code)."""
        full = F.interpolate(features, size=sparse.shape[-2:], mode="bilinear", align_corners=False)
        prototypes, present = class_prototypes(full, sparse, self.num_classes)
        response = gmm_response(features, prototypes, present)
        return prototypes, present, F.interpolate(response, size=size, mode="bilinear", align_corners=False)

    def training_step(self, labeled, unlabeled, step):
        p, c = self.params, self.num_classes
        for key in ("sparse", "image_labels"):
            if key not in labeled:
                raise KeyError(f"method agmm trains on sparse labels: the labeled batch has no {key!r} "
                               f"(data.label_kind must be one of {list(self.label_kinds)})")
        sparse = labeled["sparse"]
        out = self.net(labeled["image"], return_features=True)
        # the GMM and the loss terms in float32 (exp, log(1 - p + 1e-6) and the prototype means lose too
        # much in bf16/fp16)
        with torch.autocast(sparse.device.type, enabled=False):
            logits, features = out["logits"].float(), out["features"].float()
            probs = logits.softmax(1)
            valid = labeled["valid"] & (sparse != IGNORE_INDEX)
            prototypes, present, response = self.responses(features, sparse, logits.shape[-2:])
            losses = {}
            if p.seg:
                losses["seg"] = p.seg_weight * sparse_ce(logits, sparse, c)
            if p.gmm:
                losses["gmm_pred"] = p.gmm_weight * gmm_prediction_loss(probs, response, present, valid)
                losses["gmm_label"] = p.gmm_weight * gmm_label_loss(response, sparse, present, c)
            if p.proto:
                vectors, in_batch = class_vectors(prototypes, present, p.class_vector)
                losses["proto"] = p.proto_weight * prototype_separation_loss(vectors, in_batch)
            if p.cls:
                losses["cls"] = p.cls_weight * absent_class_loss(probs, labeled["image_labels"], valid)
            diag = self.diagnostics(sparse, valid, present, response.detach(), logits.detach(),
                                    labeled.get("hidden_mask"))
        return StepOutput(losses, diag)

    @torch.no_grad()
    def diagnostics(self, sparse, valid, present, response, logits, hidden) -> dict:
        """Share of the crops' pixels that are labeled, the mean GMM response of the labeled class at labeled
        pixels; with hidden dense masks, the accuracy of the GMM's pseudo-label (argmax of r over the crop's
        classes, in images that have one) and of the network's prediction, over the non-padding pixels."""
        labeled = sparse < self.num_classes
        onehot = labeled_onehot(sparse, self.num_classes)
        diag = {"labeled": (labeled & valid).sum() / valid.sum().clamp(min=1),
                "gmm_response": (response * onehot).sum() / labeled.sum().clamp(min=1)}
        if hidden is not None:
            has_gmm = valid & present.any(1)[:, None, None]
            diag["acc/gmm"] = accuracy(response.argmax(1), hidden, has_gmm)
            diag["acc/net"] = accuracy(logits.argmax(1), hidden, valid)
        return diag

    @torch.no_grad()
    def pseudo_labels(self, batch):
        """The base maps (the one network is teacher and student), plus, when the batch carries its
        ``sparse`` labels: ``gmm_label`` (argmax of r over the crop's classes, 255 where there is none),
        ``gmm_response`` (max r per pixel), ``gmm/<k>`` (r of class k) and the two declared layers; without
        sparse labels there are no prototypes, so every pixel is "no GMM response" and the responses are 0."""
        out = self.net(batch["image"], return_features=True)
        conf, label = out["logits"].softmax(1).max(1)
        b, h, w = label.shape
        valid = batch.get("valid", torch.ones_like(label, dtype=torch.bool))
        maps = {"teacher_label": label, "confidence": conf, "student_pred": label}
        sparse = batch.get("sparse")
        if sparse is None:
            response = torch.zeros(b, self.num_classes, h, w, device=label.device)
            has_gmm = torch.zeros_like(valid)
        else:
            _, present, response = self.responses(out["features"].float(), sparse, (h, w))
            has_gmm = valid & present.any(1)[:, None, None]
        top, gmm_label = response.max(1)
        agreement = torch.where(gmm_label == label, 1, 2)
        if sparse is not None:
            agreement = torch.where(sparse < self.num_classes, 0, agreement)
        agreement = torch.where(has_gmm, agreement, 3).to(torch.uint8)
        maps.update({"gmm_label": gmm_label.masked_fill(~has_gmm, IGNORE_INDEX), "gmm_response": top,
                     "gmm_agreement": agreement, "gmm_level": response_levels(top)})
        maps.update({f"gmm/{k}": response[:, k] for k in range(self.num_classes)})
        return maps

METHOD = MethodEntry("agmm", AGMM, "AGMM-SASS", None)


__all__ = ["AGMM", "AGMMParams", "absent_class_loss", "binary_ce", "class_prototypes", "class_vectors",
           "gmm_label_loss", "gmm_prediction_loss", "gmm_response", "labeled_onehot", "masked_mean",
           "mean_over_classes", "prototype_separation_loss", "response_levels", "sparse_ce"]
