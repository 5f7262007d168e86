"""CoSA (Yang, Rahmani, Black and Williams, "Weakly Supervised Co-training with Swapping Assignments for
Semantic Segmentation", ECCV 2024, arXiv:2402.17891): end-to-end segmentation from image-level labels, where
an assignment network (AN, an EMA of the online network) gives the online network (ON) swapped assignments:
CAM pseudo-labels (CPL) supervise the ON's segmentation head and segmentation pseudo-labels (SPL) its CAMs.

One step (after a classification-only warm-up, ``cls_only``):
- ON on the student view (``image_s`` when the batch has it, else ``image``): segmentation logits, CAMs and
  image logits of a CAM head on the last feature and of an auxiliary CAM head on an earlier one;
  L_cls + L_cls_aux = multilabel soft margin of both heads' image logits against the image's classes;
- AN on ``image`` (scales ``pseudo_scales``, with flips where the data set flips): normalised CAMs -> CPL (:func:`cam_pseudo_labels`,
  thresholds fixed or found by :class:`ThresholdSearch`), optionally weighted by their reliability
  (:func:`reliability_weights`); the summed segmentation logits -> SPL (:func:`segmentation_pseudo_labels`);
- L_seg = :func:`balanced_seg_loss` of the ON's segmentation on the CPL; L_cam = :func:`spl_cam_loss` of the
  ON's CAMs against the SPL; L_cs = :func:`contrastive_separation` of the ON's CAM feature by SPL region;
- L_crf = the dense-CRF energy of the ON's segmentation (:mod:`reprokit.methods.crf_energy`, the released
  code's regulariser), gated by the CPL;
- L = L_cls + L_cls_aux + ``seg_weight`` L_seg + ``cam_weight`` L_cam + ``cs_weight`` L_cs + ``crf_weight`` L_crf.
The paper's description is the default, and the code's dense-CRF energy, which the paper leaves unsaid, is on
as the code trains with it; each way the released code differs is an option (docs/cosa.md has the table,
and says which formulas are reprokit's reading where the description leaves them open).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from reprokit.config import COUNT, NON_NEGATIVE, POSITIVE, PROBABILITY, ConfigError, chosen, ranged
from reprokit.labels import IGNORE_INDEX
from reprokit.methods.base import MethodEntry, StepOutput
from reprokit.methods.display import CategoryLayer, HeatLayer, LabelLayer
from reprokit.methods.cam import (CAMHead, WeakParams, build_backbone, cam_pseudo_labels, class_labels,
                                  image_classification_loss, image_label_protocols, normalise_cams)
from reprokit.methods.crf_energy import colours, dense_crf_energy_loss
from reprokit.methods.semi import accuracy
from reprokit.methods.teachers import EMATeachers, ema_copy
from reprokit.models.cells import CellGrid, cells_to_pixels, labels_at_cells, pixels_at_cells
from reprokit.models.deeplab import ASPP, conv_bn_relu

DECODERS = ("deeplabv3plus", "largefov")
ASSIGNMENT_INITS = ("copy", "independent")
EVAL_NETS = ("online", "assignment")
#: categories of the inspector's layers, by id
CPL_REGIONS = ("foreground (m > high)", "ignored (band or padding)", "background (m <= low)")
CPL_VS_SPL = ("CPL = SPL", "CPL != SPL", "CPL ignored")
RELIABILITY_LEVELS = ("< 0.5", "0.5-0.7", "0.7-0.9", ">= 0.9")
LEVEL_EDGES = (0.5, 0.7, 0.9)
LEVEL_COLOURS = ((214, 39, 40), (255, 127, 14), (255, 187, 40), (46, 160, 67))
LARGEFOV_CHANNELS = 512


# --- formulas -----------------------------------------------------------------------------------------------
def segmentation_pseudo_labels(seg_logits: torch.Tensor, fg_labels: torch.Tensor,
                               temperature: float = 0.01) -> torch.Tensor:
    """SPL [B, C, H, W]: softmax(logits / T) over background and the image's classes, the logits of classes
    absent from the image (``fg_labels`` [B, K] False) suppressed to -1e5 first (CoSA, T = 0.01: nearly one-hot).
    Computed in float32."""
    keep = torch.cat([torch.ones_like(fg_labels[:, :1]), fg_labels], dim=1).bool()[..., None, None]
    return (seg_logits.float().masked_fill(~keep, -1e5) / temperature).softmax(1)


def spl_cam_loss(cams: torch.Tensor, spl: torch.Tensor, grid: CellGrid) -> torch.Tensor:
    """CoSA's CAM loss: multilabel soft margin between ReLU(raw CAMs) [B, K, h, w] (logits, at the feature's
    resolution) and the SPL's foreground channels [B, 1 + K, H, W] sampled at the centres of the CAM's cells
    (``grid``; the released code resizes with ``align_corners=False``, which samples a convolutional CAM's cell
    half a stride off its centre and so trains the CAMs towards that shift), averaged over positions and
    classes (the multilabel soft margin of the flattened positions equals the mean element-wise BCE with
    logits). Every position counts, padding included, as in the released code."""
    target = pixels_at_cells(spl[:, 1:], cams.shape[-2:], grid)
    return F.binary_cross_entropy_with_logits(F.relu(cams.float()), target)


def balanced_seg_loss(logits: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None,
                      fg_share: float = 0.5) -> torch.Tensor:
    """L_seg = (1 - a) CE over background pixels + a CE over foreground pixels, a = ``fg_share`` (CoSA: 0.5),
    each the (optionally ``weight``-ed) CE summed over its pixels and divided by their count; pixels labelled
    255 count in neither; an empty part contributes 0 (the released code's +1e-6 denominator does the same)."""
    ce = F.cross_entropy(logits.float(), target.long(), ignore_index=IGNORE_INDEX, reduction="none")
    if weight is not None:
        ce = ce * weight
    bg, fg = target == 0, (target != 0) & (target != IGNORE_INDEX)
    bg_loss = (ce * bg).sum() / bg.sum().clamp(min=1)
    fg_loss = (ce * fg).sum() / fg.sum().clamp(min=1)
    return (1 - fg_share) * bg_loss + fg_share * fg_loss


def cam_perplexity(cams: torch.Tensor, fg_labels: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per-pixel perplexity [B, H, W] of the normalised CAMs (reprokit's reading of CoSA's CAM perplexity):
    exp of the entropy of q, the distribution over background and the image's classes with q_0 proportional to
    1 - m (m = the largest CAM value among the image's classes) and q_k proportional to CAM_k. 1 where one
    hypothesis holds all the mass, up to 1 + (number of the image's classes) where all are equal."""
    fg = cams.float().clamp(0, 1) * fg_labels.bool()[..., None, None]
    q = torch.cat([1 - fg.amax(1, keepdim=True), fg], dim=1)
    q = q / q.sum(1, keepdim=True).clamp(min=eps)
    return torch.exp(-(q * q.clamp(min=eps).log()).sum(1))


def reliability_weights(cams: torch.Tensor, fg_labels: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Reliability-based adaptive weights [B, H, W] in (0, 1]: perplexity ** -beta (reprokit's reading of
    CoSA's RAW: uncertain pixels weigh less in L_seg; beta = 1, the code's unused ``camweight_beta``)."""
    return cam_perplexity(cams, fg_labels).pow(-beta)


def contrastive_separation(feature: torch.Tensor, labels: torch.Tensor, num_classes: int,
                           temperature: float = 0.1) -> torch.Tensor:
    """Contrastive separation of foreground and background (reprokit's reading of CoSA's CS). ``feature``
    [B, D, h, w] is the ON's CAM feature, ``labels`` [B, h, w] the SPL classes at its resolution (255: not
    used). In every image holding both background and some foreground, each labelled position's normalised
    feature is pulled towards the prototype of its own region and pushed from the prototypes of the image's
    other regions (prototype: the normalised mean feature of a class's positions in that image, without
    gradient): CE over the image's prototypes of cosine / ``temperature``, averaged over the positions used;
    0 when there are none. Runs without host synchronisation."""
    z = F.normalize(feature.float().flatten(2).transpose(1, 2), dim=-1)  # [B, N, D]
    lab = labels.flatten(1).long()
    onehot = F.one_hot(lab.clamp(max=num_classes), num_classes + 1)[..., :num_classes].float()  # [B, N, C]
    exists = onehot.sum(1) > 0  # [B, C]
    protos = F.normalize(onehot.transpose(1, 2) @ z, dim=-1).detach()  # [B, C, D]
    logits = (z @ protos.transpose(1, 2) / temperature).masked_fill(~exists[:, None, :], -1e4)
    usable = exists[:, 0] & exists[:, 1:].any(1)
    target = lab.masked_fill(~usable[:, None], IGNORE_INDEX)
    ce = F.cross_entropy(logits.transpose(1, 2), target, ignore_index=IGNORE_INDEX, reduction="sum")
    return ce / (target != IGNORE_INDEX).sum().clamp(min=1)


def _gmm_log_joint(v: torch.Tensor, weight: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """log(weight_k N(v | mean_k, var_k)) [N, 3] of a 1-D Gaussian mixture."""
    return weight.log() - 0.5 * (torch.log(2 * math.pi * var) + (v[:, None] - mean) ** 2 / var)


def gmm_thresholds(values: torch.Tensor, floor: float = 0.05, iters: int = 100):
    """CoSA's threshold search on a set of max-CAM values: a 3-component 1-D Gaussian mixture over the values
    above ``floor``, fitted by EM (``iters`` iterations) from means (min, median, max) as the released code gives
    them, with variances 1 and equal weights (reprokit's start) and a 1e-6 variance floor; every value goes to
    its most likely component. Returns (low, high) = (largest value of the lowest-mean component, smallest value
    of the highest-mean one), or None when fewer than 3 values pass or a component ends empty."""
    v = values[values > floor].float()
    if v.numel() < 3:
        return None
    mean = torch.stack([v.min(), v.quantile(0.5), v.max()])
    var, weight = torch.ones_like(mean), torch.full_like(mean, 1 / 3)
    for _ in range(iters):
        resp = _gmm_log_joint(v, weight, mean, var).softmax(1)
        nk = resp.sum(0) + 10 * torch.finfo(torch.float32).eps
        weight, mean = nk / v.numel(), (resp * v[:, None]).sum(0) / nk
        var = (resp * (v[:, None] - mean) ** 2).sum(0) / nk + 1e-6
    component = _gmm_log_joint(v, weight, mean, var).argmax(1)
    order = mean.argsort()
    lowest, highest = component == order[0], component == order[2]
    if not (bool(lowest.any()) and bool(highest.any())):
        return None
    return v[lowest].max(), v[highest].min()


class ThresholdSearch(nn.Module):
    """CoSA's dynamic thresholds as the released code computes them: a ring queue of the max-CAM maps (the
    largest CAM among the image's classes, resized bilinearly to ``side`` x ``side``) of the last ``images``
    images, the mixture of :func:`gmm_thresholds` fitted to the queue at every update, and low / high
    thresholds following its result by an EMA (``momentum``) from their starting values. Queue, count and
    thresholds are buffers: they are in the method's state dict, so a resume continues exactly. (The code's queue
    starts full of uniform noise; this one starts empty and fits only what it holds.)"""

    def __init__(self, images: int, side: int, low: float, high: float, momentum: float = 0.99,
                 floor: float = 0.05, iters: int = 100):
        super().__init__()
        self.side, self.momentum, self.floor, self.iters = side, momentum, floor, iters
        self.register_buffer("queue", torch.zeros(images, side * side))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))  # images queued so far
        self.register_buffer("low", torch.tensor(float(low)))
        self.register_buffer("high", torch.tensor(float(high)))

    @torch.no_grad()
    def push(self, cams: torch.Tensor, fg_labels: torch.Tensor) -> None:
        masked = cams.float() * fg_labels.bool()[..., None, None]
        small = F.interpolate(masked, size=(self.side, self.side), mode="bilinear", align_corners=False)
        rows = small.amax(1).flatten(1)[-self.queue.shape[0]:]
        index = (self.count + torch.arange(rows.shape[0], device=rows.device)) % self.queue.shape[0]
        self.queue[index] = rows
        self.count += rows.shape[0]

    @torch.no_grad()
    def update(self, cams: torch.Tensor, fg_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Queue the batch's max-CAM maps, refit, move the thresholds; returns (low, high). Reads the queue
        back to the host once (as the code, which fits with scikit-learn on the CPU)."""
        self.push(cams, fg_labels)
        filled = self.queue[: int(min(int(self.count), self.queue.shape[0]))]
        found = gmm_thresholds(filled.flatten(), self.floor, self.iters)
        if found is not None:
            self.low.lerp_(found[0], 1 - self.momentum)
            self.high.lerp_(found[1], 1 - self.momentum)
        return self.low.clone(), self.high.clone()


# --- networks -----------------------------------------------------------------------------------------------
class DeepLabDecoder(nn.Module):
    """DeepLabV3+'s head as reprokit.models.deeplab builds it (ASPP on the last feature, fused with the reduced
    low-level feature; same module names), on the stages of a CAM backbone; the ASPP output reaches the
    low-level cells with each high-level cell at its centre (``high_in_low``: the high stage's grid in units of
    low-level cells)."""

    def __init__(self, cfg, low_channels: int, high_channels: int, num_classes: int, high_in_low: CellGrid):
        super().__init__()
        self.high_in_low = high_in_low
        self.aspp = ASPP(high_channels, cfg.aspp_channels, cfg.aspp_rates)
        self.reduce = conv_bn_relu(low_channels, cfg.low_level_channels, 1)
        self.fuse = nn.Sequential(conv_bn_relu(cfg.aspp_channels + cfg.low_level_channels, cfg.decoder_channels),
                                  conv_bn_relu(cfg.decoder_channels, cfg.decoder_channels))
        self.classifier = nn.Sequential(nn.Dropout2d(cfg.dropout), nn.Conv2d(cfg.decoder_channels, num_classes, 1))

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        high = cells_to_pixels(self.aspp(high), low.shape[-2:], self.high_in_low).to(low.dtype)
        return self.classifier(self.fuse(torch.cat([high, self.reduce(low)], dim=1)))


class LargeFOV(nn.Module):
    """The released CoSA code's segmentation head on the last feature: two 3x3 convolutions (dilation 5, 512
    channels, no bias) with ReLU, then a 1x1 classifier without bias."""

    def __init__(self, cin: int, num_classes: int, dilation: int = 5):
        super().__init__()
        c = LARGEFOV_CHANNELS
        self.net = nn.Sequential(nn.Conv2d(cin, c, 3, padding=dilation, dilation=dilation, bias=False),
                                 nn.ReLU(inplace=True),
                                 nn.Conv2d(c, c, 3, padding=dilation, dilation=dilation, bias=False),
                                 nn.ReLU(inplace=True), nn.Conv2d(c, num_classes, 1, bias=False))

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return self.net(high)


class CoSANetwork(nn.Module):
    """Backbone, segmentation decoder, CAM head on the last feature, auxiliary CAM head on the earlier one.
    ``forward(x)`` gives segmentation logits at the input's size (what is evaluated); ``heads=True`` gives the
    dict of every head's output at its own resolution: seg, cam, cls, cam_aux, cls_aux, feature. ``grids``
    places each head's cells on the input (``seg``: the decoder's output, ``cam``, ``cam_aux``)."""

    def __init__(self, model_cfg, params, num_classes: int):
        super().__init__()
        self.backbone = bb = build_backbone(model_cfg, params)
        low, mid, high = (bb.grids[k] for k in ("low", "mid", "high"))
        if params.decoder == "largefov":
            self.decoder, seg = LargeFOV(bb.high_channels, num_classes), high
        else:
            self.decoder = DeepLabDecoder(model_cfg, bb.low_channels, bb.high_channels, num_classes, high.within(low))
            seg = low
        self.grids = {"seg": seg, "cam": high, "cam_aux": mid}
        self.cam_head = CAMHead(bb.high_channels, num_classes - 1, params.pool)
        self.aux_cam_head = CAMHead(bb.mid_channels, num_classes - 1, params.pool)

    def forward(self, x: torch.Tensor, heads: bool = False):
        low, mid, high = self.backbone(x)
        seg = self.decoder(low, high)
        if not heads:
            return cells_to_pixels(seg, x.shape[-2:], self.grids["seg"]).to(seg.dtype)
        cam, cls = self.cam_head(high)
        cam_aux, cls_aux = self.aux_cam_head(mid)
        return {"seg": seg, "cam": cam, "cls": cls, "cam_aux": cam_aux, "cls_aux": cls_aux, "feature": high}


@torch.no_grad()
def assignment_maps(net: CoSANetwork, x: torch.Tensor, scales, flip: bool = True,
                    aux_last_scale_only: bool = False) -> dict:
    """The assignment network's maps on ``x`` [B, 3, H, W], at H x W: ``cams`` and ``cams_aux`` (each view's CAMs
    resampled onto the pixels of ``x``, the max over the flip pair, ReLU, summed over the scales, then
    :func:`normalise_cams`), ``seg`` (segmentation logits summed over flips and scales) and ``cls`` (image
    logits averaged over the views): the released code's multi-scale assignment. Every map is resampled with
    its cells at their centres on the rescaled input (:func:`reprokit.models.cells.cells_to_pixels`) and the
    flipped view's maps are mirrored in pixel space, so all views and scales agree on where a cell's evidence
    lies. That code keeps only the last scale's auxiliary CAM (a list it reassigns), ``aux_last_scale_only``."""
    b, _, h, w = x.shape
    cams = aux = seg = cls = 0
    for s in scales:
        xs = x if s == 1 else F.interpolate(x, size=(int(s * h), int(s * w)), mode="bilinear", align_corners=False)
        out = net(torch.cat([xs, xs.flip(-1)]) if flip else xs, heads=True)
        c, a, g = (cells_to_pixels(out[k], (h, w), net.grids[k], input_size=xs.shape[-2:])
                   for k in ("cam", "cam_aux", "seg"))
        if flip:
            c, a, g = torch.max(c[:b], c[b:].flip(-1)), torch.max(a[:b], a[b:].flip(-1)), g[:b] + g[b:].flip(-1)
        cams = cams + F.relu(c)
        aux = F.relu(a) if aux_last_scale_only else aux + F.relu(a)
        seg = seg + g
        cls = cls + out["cls"].float().reshape(-1, b, out["cls"].shape[1]).mean(0)
    return {"cams": normalise_cams(cams), "cams_aux": normalise_cams(aux), "seg": seg, "cls": cls / len(scales)}


# --- the method ---------------------------------------------------------------------------------------------
@dataclass
class CoSAParams(WeakParams):
    """Defaults: the paper's description; the released code's choices are noted (docs/cosa.md)."""

    name: str = "cosa"
    decoder: str = chosen(DECODERS, "deeplabv3plus")  # reprokit's segmentation head; largefov: the released code's
    ema_momentum: float = ranged(PROBABILITY, 0.9994)  # AN = EMA of the ON
    # the AN's horizon 1 / (1 - momentum) as a fraction of training; when set, the momentum follows from it and
    # the schedule's length (the code's 0.9994 over its 32,000 VOC steps is a horizon of 0.052)
    ema_horizon: Optional[float] = ranged(PROBABILITY, None)
    ema_warmup: bool = False  # min(ema_momentum, 1 - 1 / (t + 1)) at step t (not in the paper or code)
    # copy: AN starts as the ON; independent: its own random heads (code)
    assignment_init: str = chosen(ASSIGNMENT_INITS, "copy")
    # network evaluated: online | assignment (the code keeps whichever is best on val)
    eval_net: str = chosen(EVAL_NETS, "online")
    cls_only: float = ranged(PROBABILITY, 0.1875)  # classification-only warm-up: 6,000 of 32,000 VOC iterations
    seg_weight: float = ranged(NON_NEGATIVE, 0.1)
    cam_weight: float = ranged(NON_NEGATIVE, 0.05)
    fg_share: float = ranged(PROBABILITY, 0.5)  # L_seg = (1 - a) CE_bg + a CE_fg
    high: float = ranged(PROBABILITY, 0.7)  # CPL thresholds (their starting values when searched)
    low: float = ranged(PROBABILITY, 0.25)
    spl_temperature: float = ranged(POSITIVE, 0.01)
    pseudo_scales: list = ranged(POSITIVE, factory=lambda: [1.0, 0.5, 1.5])  # AN input scales (code)
    # AN also sees the flipped views (code); None: when the data set flips (data.flip), as mirrored views are
    # only evidence where mirrored images are images of the same classes
    pseudo_flip: Optional[bool] = None
    # the released code's extra: the auxiliary CAM's CPL also supervises the segmentation head,
    # L_seg = (1 - s) L_seg(main CPL) + s L_seg(aux CPL), with its own thresholds
    aux_cam2seg: bool = False
    aux_cam2seg_share: float = ranged(PROBABILITY, 0.5)
    high_aux: float = ranged(PROBABILITY, 0.7)
    low_aux: float = ranged(PROBABILITY, 0.25)
    aux_last_scale_only: bool = False  # the code's auxiliary CAM keeps only the last scale
    # dynamic threshold search (in the code, off by default)
    threshold_search: bool = True
    search_images: int = ranged(COUNT, 200)  # queue length in images (code: batch 2 x 100 per process)
    search_downscale: int = ranged(COUNT, 16)  # max-CAM maps queued at crop / 16 per side
    search_floor: float = ranged(PROBABILITY, 0.05)  # values <= this are left out of the fit
    search_momentum: float = ranged(PROBABILITY, 0.99)
    search_iters: int = ranged(COUNT, 100)  # EM iterations (scikit-learn's default cap)
    # reliability-based adaptive weighting (not in the code)
    reliability: bool = True
    reliability_beta: float = ranged(NON_NEGATIVE, 1.0)
    # contrastive separation of foreground and background (not in the code)
    contrastive: bool = True
    cs_weight: float = ranged(NON_NEGATIVE, 0.1)
    cs_temperature: float = ranged(POSITIVE, 0.1)
    # the released code's dense-CRF energy loss on the ON's segmentation (reprokit.methods.crf_energy),
    # crf_weight in the total; the rest are the code's values, which hold for its crf_reference_crop
    crf: bool = True
    crf_weight: float = ranged(NON_NEGATIVE, 0.05)
    # the code's 1e-7 times the gain of its permutohedral filter, which returns 0.56-0.58 of the exact Gaussian
    # sum at the code's settings (docs/cosa.md); here the sum is exact
    crf_energy_weight: float = ranged(POSITIVE, 5.7e-8)
    crf_sigma_rgb: float = ranged(POSITIVE, 15.0)  # colours 0-255
    crf_sigma_xy: float = ranged(POSITIVE, 100.0)  # pixels of the reference crop
    crf_scale: float = ranged(PROBABILITY, 0.5)  # computed on the image and probabilities downscaled by this
    crf_reference_crop: int = ranged(COUNT, 448)

    def check(self) -> None:
        for low, high in (("low", "high"), ("low_aux", "high_aux")):
            if getattr(self, low) > getattr(self, high):
                raise ConfigError(f"config keys 'method.{low}' and 'method.{high}': expected {low} <= {high}, got "
                                  f"{getattr(self, low)} > {getattr(self, high)}")


@dataclass
class Assignment:
    """What the AN gives one batch: normalised CAMs, CPL (255: band or padding) with its thresholds and
    reliability weights, the same for the auxiliary CAM when it makes labels, and the SPL."""

    cams: torch.Tensor  # [B, K, H, W]
    cpl: torch.Tensor  # [B, H, W]
    low: torch.Tensor | float
    high: torch.Tensor | float
    weight: Optional[torch.Tensor]  # [B, H, W] or None (reliability off)
    spl: torch.Tensor  # [B, C, H, W]
    cpl_aux: Optional[torch.Tensor] = None
    weight_aux: Optional[torch.Tensor] = None


def level(values: torch.Tensor) -> torch.Tensor:
    """Bins of :data:`RELIABILITY_LEVELS` (uint8 ids)."""
    return torch.bucketize(values, torch.tensor(LEVEL_EDGES, device=values.device), right=True).to(torch.uint8)


class CoSA(EMATeachers):
    Params = CoSAParams
    pairs = (("online", "assignment"),)  # the assignment network is the online network's EMA
    teacher_name = "assignment"
    label_kinds = ("image",)
    labeled_strong_view = True  # the online network sees the crop with a photometric change (the code's view)
    may_skip_params = True  # the decoder has no loss in the classification-only warm-up
    cam_seed = "cpl"  # the pseudo_labels map the segmentation head trains on (reprokit.runs.cam_seed)
    inspector_layers = (
        CategoryLayer("CoSA CPL region", "cpl_region", CPL_REGIONS, ((46, 160, 67), (127, 127, 127), (31, 119, 180))),
        CategoryLayer("CoSA CPL vs SPL", "cpl_vs_spl", CPL_VS_SPL, ((46, 160, 67), (214, 39, 40), (127, 127, 127))),
        CategoryLayer("CoSA reliability weight", "reliability_level", RELIABILITY_LEVELS, LEVEL_COLOURS),
        LabelLayer("CoSA CPL", "cpl"), LabelLayer("CoSA auxiliary CPL", "cpl_aux"), LabelLayer("CoSA SPL", "spl"),
        HeatLayer("CoSA reliability (heat)", "reliability"),
        HeatLayer("CoSA CAM per class", "cams", per_class=True, first_class=1))

    def other_protocols(self, protocol):
        return image_label_protocols(protocol)

    def __init__(self, cfg, params, num_classes):
        super().__init__(cfg, params, num_classes)
        self.online = CoSANetwork(cfg.model, params, num_classes)
        if params.assignment_init == "copy":
            self.assignment = ema_copy(self.online)
        else:
            self.assignment = CoSANetwork(cfg.model, params, num_classes).requires_grad_(False)
        side = max(1, cfg.data.crop_size // params.search_downscale)
        search = dict(images=params.search_images, side=side, momentum=params.search_momentum,
                      floor=params.search_floor, iters=params.search_iters)
        self.search = ThresholdSearch(low=params.low, high=params.high, **search)
        self.search_aux = ThresholdSearch(low=params.low_aux, high=params.high_aux, **search)
        if params.pseudo_flip and not cfg.data.flip:
            raise ConfigError("config key 'method.pseudo_flip': true shows the assignment network mirrored images, "
                              "but data.flip is false (this data set's mirrored images are not images of the same "
                              "classes); leave method.pseudo_flip unset to follow data.flip")
        self.flip_views = cfg.data.flip if params.pseudo_flip is None else params.pseudo_flip

    def reads_hidden_masks(self) -> bool:
        return True  # the labeled batches' hidden masks feed the pseudo-label accuracy diagnostics

    def ema_pairs(self):
        """The AN's momentum: ``ema_momentum``, or the one whose horizon is ``ema_horizon`` of the schedule."""
        horizon = self.params.ema_horizon
        if horizon is None:
            return super().ema_pairs()
        momentum = 1.0 - 1.0 / max(horizon * self.total_steps, 1.0)
        return [(teacher, student, momentum) for teacher, student, _ in super().ema_pairs()]

    def cpl(self, cams, fg, valid, search: ThresholdSearch, low: float, high: float, update: bool):
        """(CPL, low, high, weights) of one set of normalised CAMs."""
        p = self.params
        if p.threshold_search:
            low, high = search.update(cams, fg) if update else (search.low, search.high)
        label = cam_pseudo_labels(cams, fg, high, low).masked_fill(~valid, IGNORE_INDEX)
        weight = reliability_weights(cams, fg, p.reliability_beta) if p.reliability else None
        return label, low, high, weight

    @torch.no_grad()
    def assign(self, x: torch.Tensor, fg: torch.Tensor, valid: torch.Tensor, update: bool = True) -> Assignment:
        """The AN's pseudo-labels for images ``x`` with foreground classes ``fg`` [B, K]; ``update`` moves the
        threshold search (training), otherwise its current thresholds are used (inspection)."""
        p = self.params
        maps = assignment_maps(self.assignment, x, p.pseudo_scales, self.flip_views, p.aux_last_scale_only)
        cpl, low, high, weight = self.cpl(maps["cams"], fg, valid, self.search, p.low, p.high, update)
        out = Assignment(maps["cams"], cpl, low, high, weight, segmentation_pseudo_labels(maps["seg"], fg,
                                                                                          p.spl_temperature))
        if p.aux_cam2seg:
            out.cpl_aux, _, _, out.weight_aux = self.cpl(maps["cams_aux"], fg, valid, self.search_aux, p.low_aux,
                                                         p.high_aux, update)
        return out

    def training_step(self, labeled, unlabeled, step):
        p = self.params
        fg = class_labels(labeled, p.labels_from)[:, 1:]
        x_w, valid = labeled["image"], labeled["valid"]
        out = self.online(labeled.get("image_s", x_w), heads=True)
        losses = {"cls": image_classification_loss(out["cls"], fg),
                  "cls_aux": image_classification_loss(out["cls_aux"], fg)}
        diag = {"cls_acc": ((out["cls"] > 0) == fg).float().mean()}
        full = self.phase(step, p.cls_only)
        if not (full or p.threshold_search):
            return StepOutput(losses, diag)
        a = self.assign(x_w, fg, valid)  # in the warm-up too when searching: the code's queue fills from step 0
        diag.update(self.diagnostics(a, labeled))
        if not full:
            return StepOutput(losses, diag)
        seg = cells_to_pixels(out["seg"], x_w.shape[-2:], self.online.grids["seg"])
        l_seg = balanced_seg_loss(seg, a.cpl, a.weight, p.fg_share)
        if a.cpl_aux is not None:
            l_aux = balanced_seg_loss(seg, a.cpl_aux, a.weight_aux, p.fg_share)
            l_seg = (1 - p.aux_cam2seg_share) * l_seg + p.aux_cam2seg_share * l_aux
        losses["seg"] = p.seg_weight * l_seg
        losses["cam"] = p.cam_weight * spl_cam_loss(out["cam"], a.spl, self.online.grids["cam"])
        if p.crf:
            losses["crf"] = p.crf_weight * self.crf_energy(seg, labeled.get("image_s", x_w), valid, a.cpl)
        if p.contrastive:
            regions = labels_at_cells(a.spl.argmax(1).masked_fill(~valid, IGNORE_INDEX), out["feature"].shape[-2:],
                                      self.online.grids["cam"])
            losses["cs"] = p.cs_weight * contrastive_separation(out["feature"], regions, self.num_classes,
                                                                p.cs_temperature)
        if "hidden_mask" in labeled:
            diag["acc/online"] = accuracy(seg.detach().argmax(1), labeled["hidden_mask"], valid)
        return StepOutput(losses, diag)

    def crf_energy(self, seg: torch.Tensor, x: torch.Tensor, valid: torch.Tensor, cpl: torch.Tensor) -> torch.Tensor:
        """The dense-CRF energy of the ON's segmentation ``seg`` [B, K, H, W] (logits at the pixels of the
        normalised image ``x`` it saw), gated by the CPL ``cpl`` (its 255s are the undecided pixels)."""
        p, data = self.params, self.cfg.data
        colour = colours(x, data.mean, data.std)
        return dense_crf_energy_loss(seg.float().softmax(1), colour, valid, cpl == IGNORE_INDEX,
                                     weight=p.crf_energy_weight, sigma_rgb=p.crf_sigma_rgb, sigma_xy=p.crf_sigma_xy,
                                     scale=p.crf_scale, reference_crop=p.crf_reference_crop)

    def diagnostics(self, a: Assignment, labeled: dict) -> dict:
        """Thresholds, CPL shares (foreground, background; the rest is ignored) of the valid pixels, the mean
        reliability weight of the labelled ones; with hidden ground truth (diagnostics only), the accuracy of
        the confident CPL and of the SPL."""
        valid = labeled["valid"]
        n = valid.sum().clamp(min=1)
        bg, fg = a.cpl == 0, (a.cpl != 0) & (a.cpl != IGNORE_INDEX)
        diag = {"threshold/low": a.low, "threshold/high": a.high, "cpl/fg": fg.sum() / n, "cpl/bg": bg.sum() / n}
        if a.weight is not None:
            diag["reliability"] = (a.weight * (fg | bg)).sum() / (fg | bg).sum().clamp(min=1)
        gt = labeled.get("hidden_mask")
        if gt is not None:
            diag["acc/cpl"] = accuracy(a.cpl, gt, fg | bg)
            diag["acc/spl"] = accuracy(a.spl.argmax(1), gt, valid)
        return diag

    @torch.no_grad()
    def pseudo_labels(self, batch):
        """Adds the CPL (``cpl``, 255 in the ignore band and padding; ``cpl_aux`` when the auxiliary CAM makes
        labels), the SPL classes (``spl``), the reliability weights (``reliability``), the normalised AN CAMs
        (``cams`` [B, K, H, W]) and three category maps: CPL region, CPL vs SPL, reliability level. Image labels
        come from ``image_labels`` when the batch has them, else from the AN's classifier (sigmoid > 0.5)."""
        maps = super().pseudo_labels(batch)
        x = batch["image"]
        valid = batch.get("valid", torch.ones_like(maps["confidence"], dtype=torch.bool))
        labels = batch.get("image_labels")
        fg = labels[:, 1:].bool() if labels is not None else self.assignment(x, heads=True)["cls"] > 0
        a = self.assign(x, fg, valid, update=False)
        spl = a.spl.argmax(1)
        region = torch.ones_like(a.cpl, dtype=torch.uint8)
        region[(a.cpl != 0) & (a.cpl != IGNORE_INDEX)] = 0
        region[a.cpl == 0] = 2
        agree = torch.where(a.cpl == IGNORE_INDEX, 2, (a.cpl != spl).long()).to(torch.uint8)
        weight = a.weight if a.weight is not None else reliability_weights(a.cams, fg, self.params.reliability_beta)
        maps.update({"cpl": a.cpl, "spl": spl, "reliability": weight, "cams": a.cams, "cpl_region": region,
                     "cpl_vs_spl": agree, "reliability_level": level(weight)})
        if a.cpl_aux is not None:
            maps["cpl_aux"] = a.cpl_aux
        return maps

METHOD = MethodEntry("cosa", CoSA, "CoSA", None)


__all__ = ["Assignment", "CoSA", "CoSANetwork", "CoSAParams", "DeepLabDecoder", "LargeFOV", "ThresholdSearch",
           "assignment_maps", "balanced_seg_loss", "cam_perplexity", "cam_pseudo_labels", "contrastive_separation",
           "gmm_thresholds", "reliability_weights", "segmentation_pseudo_labels", "spl_cam_loss"]
