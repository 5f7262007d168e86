"""Class activation maps (CAMs) for training from image-level labels, and the two-stage CAM baseline built on them.

A CAM classifier is a 1x1 convolution without bias over a backbone feature, one output per foreground class:
applied at every position it gives the class activation maps, applied to the pooled feature it gives the
image's class logits, which learn the image-level labels with the multilabel soft-margin loss. Normalised CAMs
thresholded against a constant background score are the classic pseudo-masks of weakly supervised
segmentation. The weakly supervised methods here (CoSA) build on the pieces of this module; the method defined
here, ``cam``, is the classic two-stage baseline in one run: the classifier trains first, then its frozen,
thresholded CAMs supervise a segmentation network (:class:`CAMBaseline`). docs/cosa.md describes both.

Label conventions: ``image_labels`` [B, C] marks the classes of the uncropped image (index 0 is background,
so the foreground labels are ``[:, 1:]``), ``crop_labels`` those of the crop; CAM channels are the C - 1
foreground classes, CAM channel k is class k + 1.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from reprokit.config import PROBABILITY, ConfigError, MethodParams, Range, chosen, ranged
from reprokit.labels import IGNORE_INDEX
from reprokit.methods.base import Method, MethodEntry, StepOutput
from reprokit.methods.display import HeatLayer
from reprokit.methods.semi import accuracy
from reprokit.models.cells import CellGrid, cells_to_pixels
from reprokit.models.deeplab import CheckpointKeyError, build_network, pretrained_trunk
from reprokit.models.resnet import BASIC_DEPTHS, ResNetBackbone
from reprokit.records import TensorFileError, load_tensors

BACKBONES = ("model", "vit_b_16")
POOLS = ("max", "avg")
LABEL_SOURCES = ("image", "crop")
EVAL_CLASSES = ("predicted", "all")
CAM_EVAL_NETS = ("segmentation", "cam")


# --- formulas -----------------------------------------------------------------------------------------------
def normalise_cams(cams: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """ReLU, then per image and channel (c - min) / (max - min + eps) over the spatial positions: each class's
    map spans [0, 1) whatever the scale of its activations (the released CoSA code's normalisation)."""
    cams = F.relu(cams)
    cams = cams - cams.amin(dim=(-2, -1), keepdim=True)
    return cams / (cams.amax(dim=(-2, -1), keepdim=True) + eps)


def cam_pseudo_labels(cams: torch.Tensor, image_labels: torch.Tensor, high: float = 0.7,
                      low: float = 0.25) -> torch.Tensor:
    """CAM pseudo-labels [B, H, W] from foreground CAMs ``cams`` [B, K, H, W] in [0, 1] and the image's
    foreground classes ``image_labels`` [B, K] (bool): with m the largest CAM value among the image's classes
    at a pixel and k its channel, the label is k + 1 where m > ``high``, background (0) where m <= ``low``, and
    255 (ignore) in between. Classes absent from the image never win; an image without foreground classes is
    background everywhere. ``high == low`` gives the single-threshold CAM mask with no ignore band.
    (CoSA's CPL; with one threshold, the classic CAM pseudo-mask.)"""
    present = image_labels.bool()[..., None, None]
    m, k = cams.masked_fill(~present, float("-inf")).max(1)
    label = torch.where(m > high, k + 1, torch.full_like(k, IGNORE_INDEX))
    return label.masked_fill(m <= low, 0)


def image_classification_loss(logits: torch.Tensor, fg_labels: torch.Tensor) -> torch.Tensor:
    """Multilabel soft margin between image logits [B, K] and the image's foreground classes [B, K]:
    -mean over images and classes of y log sigmoid(x) + (1 - y) log sigmoid(-x), in float32."""
    return F.multilabel_soft_margin_loss(logits.float(), fg_labels.float())


def class_labels(batch: dict, source: str = "image") -> torch.Tensor:
    """The batch's class labels [B, C] (bool, index 0 background): ``image_labels`` (the classes of the uncropped
    image) or ``crop_labels`` (those of the crop), as the data layer gives them for ``data.label_kind: image``."""
    key = f"{source}_labels"
    if key not in batch:
        raise KeyError(f"the labeled batch has no '{key}' (image-level labels: data.label_kind image); "
                       f"keys present: {sorted(batch)}")
    return batch[key].bool()


# --- networks -----------------------------------------------------------------------------------------------
class ResNetStages(ResNetBackbone):
    """The configured ResNet (reprokit.models.deeplab) returning (low 1/4, mid = layer3, high = layer4): the
    earlier ``mid`` feature feeds an auxiliary CAM head. ``grids`` says where each stage's cells sit: every
    strided layer pads by half its kernel, so cell o of a stride-s stage is centred over pixel s * o (the stem
    without max-pool halves every stride)."""

    def __init__(self, cfg):
        super().__init__(cfg, pretrained_trunk(cfg))
        self.mid_channels = getattr(self.layer3[-1], "conv2" if cfg.backbone in BASIC_DEPTHS else "conv3").out_channels
        base = 4 if cfg.stem_maxpool else 2
        self.grids = {"low": CellGrid(base), "mid": CellGrid(base * (2 if cfg.output_stride == 8 else 4)),
                      "high": CellGrid(base * cfg.output_stride // 4)}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        low = self.layer1(self.stem(x))
        mid = self.layer3(self.layer2(low))
        return low, mid, self.layer4(mid)


class ViTStages(nn.Module):
    """A torchvision Vision Transformer as feature maps at 1/patch resolution: (low, mid, high) where high is the
    final (layer-normed) token map, mid the output of block ``aux_layer`` (Python indexing: -3 is the third
    block from the end, as in the CoSA code) and low = high (a ViT has no finer feature). The position
    embeddings are resized (bicubic) to the input's patch grid, so any input size works; sizes that are not a
    multiple of the patch lose their last partial patch row / column (the conv projection floors)."""

    def __init__(self, vit: nn.Module, aux_layer: int = -3, weights: Optional[str] = None):
        super().__init__()
        vit.heads = nn.Identity()  # the ImageNet classifier is not used
        if weights:
            load_vit_weights(vit, weights)
        self.vit, self.aux_layer = vit, aux_layer
        patch = CellGrid.patches(vit.patch_size)
        self.grids = {"low": patch, "mid": patch, "high": patch}
        depth = len(vit.encoder.layers)
        if not -depth <= aux_layer < depth:
            raise ConfigError(f"config key 'method.vit_aux_layer': {aux_layer} is not a block of a {depth}-block ViT")
        self.low_channels = self.mid_channels = self.high_channels = vit.hidden_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        vit = self.vit
        patches = vit.conv_proj(x)  # [B, D, h, w]
        b, d, h, w = patches.shape
        pos = vit.encoder.pos_embedding
        side = int(round((pos.shape[1] - 1) ** 0.5))
        grid = pos[:, 1:].reshape(1, side, side, d).permute(0, 3, 1, 2)
        if (h, w) != (side, side):
            grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
        tokens = torch.cat([vit.class_token.expand(b, -1, -1) + pos[:, :1],
                            patches.flatten(2).transpose(1, 2) + grid.flatten(2).transpose(1, 2)], dim=1)
        tokens = vit.encoder.dropout(tokens)
        outputs = []
        for block in vit.encoder.layers:
            tokens = block(tokens)
            outputs.append(tokens)
        outputs[-1] = vit.encoder.ln(tokens)

        def as_map(t):
            return t[:, 1:].transpose(1, 2).reshape(b, d, h, w)

        high = as_map(outputs[-1])
        return high, as_map(outputs[self.aux_layer]), high


def load_vit_weights(vit: nn.Module, path: str) -> None:
    """torchvision ViT weights from a local file (e.g. ``torchvision.models.vit_b_16(weights=...).state_dict()``
    saved with torch.save); the classifier head's keys are dropped, any other mismatch is an error naming it."""
    try:
        state = load_tensors(path)
    except (TensorFileError, FileNotFoundError) as exc:
        raise CheckpointKeyError(f"method.vit_weights: {exc}") from None
    state = {k.removeprefix("module."): v for k, v in state.get("state_dict", state).items()
             if not k.removeprefix("module.").startswith("heads.")}
    try:
        vit.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointKeyError(f"method.vit_weights: {path} does not fit torchvision's ViT: {exc}") from None


def build_backbone(model_cfg, params) -> nn.Module:
    """The configured ResNet (``method.backbone: model``) or torchvision's ViT-B/16 (``vit_b_16``: random
    initialisation unless ``method.vit_weights`` names a weights file; nothing is downloaded)."""
    if params.backbone == "vit_b_16":
        return ViTStages(torchvision.models.vit_b_16(), params.vit_aux_layer, params.vit_weights)
    return ResNetStages(model_cfg)


class CAMHead(nn.Module):
    """1x1 convolution without bias, one channel per foreground class. Returns (raw CAMs at the feature's
    resolution, image logits): the logits classify the globally pooled feature (``max``: the CoSA code's global
    max pooling of the feature before the classifier; ``avg``: global average pooling, the classic CAM)."""

    def __init__(self, channels: int, num_fg: int, pool: str = "max"):
        super().__init__()
        self.classifier = nn.Conv2d(channels, num_fg, 1, bias=False)
        self.pool = pool

    def forward(self, feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = F.adaptive_max_pool2d(feature, 1) if self.pool == "max" else F.adaptive_avg_pool2d(feature, 1)
        return self.classifier(feature), self.classifier(pooled).flatten(1)


class CAMNetwork(nn.Module):
    """Backbone + CAM classifier on its last feature; ``forward`` returns {"cam": raw CAMs, "cls": logits};
    ``grids["cam"]`` places the CAM's cells on the input."""

    def __init__(self, model_cfg, params, num_classes: int):
        super().__init__()
        self.backbone = build_backbone(model_cfg, params)
        self.cam_head = CAMHead(self.backbone.high_channels, num_classes - 1, params.pool)
        self.grids = {"cam": self.backbone.grids["high"]}

    def forward(self, x: torch.Tensor) -> dict:
        cam, cls = self.cam_head(self.backbone(x)[2])
        return {"cam": cam, "cls": cls}


def dense_cams(cams: torch.Tensor, size, grid: CellGrid) -> torch.Tensor:
    """Raw CAMs on the cells of ``grid`` resampled onto the ``size`` pixels of their input (each cell at its
    centre, :func:`reprokit.models.cells.cells_to_pixels`) and normalised: what is thresholded."""
    return normalise_cams(cells_to_pixels(cams, size, grid))


class ThresholdedCAM(nn.Module):
    """The CAM classifier as a segmenter (the CAM baseline's ``eval_net: cam``): per-pixel scores [B, C, H, W]
    with the background score equal to ``threshold`` and class k + 1 scored by its normalised CAM, so the argmax
    is the thresholded CAM (:func:`cam_pseudo_labels` with high = low = threshold). Classes outside the image's
    set score -1 (never the argmax). The set is ``image_labels`` [B, K] when given (the true labels: the classic
    CAM pseudo-mask), otherwise the classifier's own (sigmoid > 0.5, ``eval_classes: predicted``) or every class
    (``all``)."""

    def __init__(self, net: CAMNetwork, threshold: float, eval_classes: str = "predicted"):
        super().__init__()
        self.net, self.threshold, self.eval_classes = net, threshold, eval_classes

    def classes_and_cams(self, x: torch.Tensor, image_labels: Optional[torch.Tensor] = None):
        out = self.net(x)
        cams = dense_cams(out["cam"], x.shape[-2:], self.net.grids["cam"])
        if image_labels is not None:
            present = image_labels.bool()
        elif self.eval_classes == "predicted":
            present = out["cls"] > 0
        else:
            present = torch.ones_like(out["cls"], dtype=torch.bool)
        return present, cams

    def forward(self, x: torch.Tensor, image_labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        present, cams = self.classes_and_cams(x, image_labels)
        background = torch.full_like(cams[:, :1], self.threshold)
        return torch.cat([background, cams.masked_fill(~present[..., None, None], -1.0)], dim=1)


# --- the CAM baseline ---------------------------------------------------------------------------------------
def image_label_protocols(protocol) -> list:
    """The other protocol of CoSA's reporting for methods on image labels: classes absent from a val image's
    true labels masked out when the configured protocol does not, and the reverse."""
    return [replace(protocol, mask_absent_classes=not protocol.mask_absent_classes)]


@dataclass
class WeakParams(MethodParams):
    """Settings every CAM-based method shares: backbone, pooling and which class labels it learns."""

    # model: the ResNet of the model config (the digits default); vit_b_16: torchvision's ViT-B/16 (paper scale)
    backbone: str = chosen(BACKBONES, "model")
    vit_weights: Optional[str] = None  # torchvision ViT-B/16 state dict file; None = random initialisation
    vit_aux_layer: int = ranged(Range(-12, 11), -3)  # ViT block feeding the auxiliary CAM head (CoSA code: -3)
    pool: str = chosen(POOLS, "max")  # image logits from the globally max- (CoSA code) or average-pooled (classic CAM) feature
    labels_from: str = chosen(LABEL_SOURCES, "image")  # image: classes of the uncropped image (CoSA code); crop: of the crop


@dataclass
class CAMParams(WeakParams):
    name: str = "cam"
    stage1: float = ranged(PROBABILITY, 0.5)  # share of the schedule in which the classifier alone trains
    threshold: float = ranged(PROBABILITY, 0.5)  # background score of the CAMs (CoSA code's CAM evaluation: 0.5)
    # optional ignore band of the pseudo-masks (cam_pseudo_labels): class where the largest CAM > high,
    # background where <= low, 255 between; None: ``threshold`` (one threshold, no band)
    low: Optional[float] = ranged(PROBABILITY, None)
    high: Optional[float] = ranged(PROBABILITY, None)
    # network evaluated: segmentation (stage 2) | cam (stage 1's thresholded CAMs)
    eval_net: str = chosen(CAM_EVAL_NETS, "segmentation")
    # eval_net cam: classes a val image's CAM may take: predicted | all
    eval_classes: str = chosen(EVAL_CLASSES, "predicted")

    def band(self) -> tuple[float, float]:
        """(low, high) of the pseudo-masks, each ``threshold`` unless set."""
        return (self.threshold if self.low is None else self.low, self.threshold if self.high is None else self.high)

    def check(self) -> None:
        low, high = self.band()
        if low > high:
            raise ConfigError(f"config keys 'method.low' and 'method.high' (unset: method.threshold): expected "
                              f"low <= high, got {low} > {high}")
        if self.stage1 >= 1 and self.eval_net == "segmentation":
            raise ConfigError("config key 'method.stage1': 1 trains no segmentation network, yet method.eval_net is "
                              "'segmentation'; lower stage1 or set eval_net: cam to measure the CAM masks")


class CAMBaseline(Method):
    """The classic two-stage baseline for image-level labels, in one run. Stage 1 (the first ``stage1`` of the
    schedule): the backbone with a CAM classifier (``net``) learns the image labels by multilabel soft margin
    (loss ``cls``). Stage 2 (the rest): the classifier is frozen (no gradient, BN in eval mode) and its
    thresholded CAMs supervise a DeepLabV3+ (``seg_net``) by plain cross-entropy, 255 ignored (loss ``seg``).

    The stage-2 pseudo-masks are made online, on each training crop, from the frozen classifier and the image's
    true labels. This is the offline pipeline (write every training image's CAM mask to disk once, then train
    on the files) up to augmentation: the frozen classifier is a fixed function, so the mask of a crop differs
    from the crop of the whole image's mask only by what the network sees (the crop, rescaled and flipped, and
    the per-crop min-max normalisation of the CAMs) instead of the whole image. It saves a pass over the data
    and a mask store, and keeps one run, one config and one seed per table cell."""

    Params = CAMParams
    inspector_layers = (HeatLayer("CAM per class", "cams", per_class=True, first_class=1),)
    label_kinds = ("image",)
    may_skip_params = True  # stage 1 gives the segmentation network no gradient, stage 2 the classifier
    cam_seed = "teacher_label"  # the pseudo_labels map stage 2 trains on (reprokit.runs.cam_seed)

    def other_protocols(self, protocol):
        return image_label_protocols(protocol)

    def __init__(self, cfg, params, num_classes):
        super().__init__(cfg, params, num_classes)
        self.net = CAMNetwork(cfg.model, params, num_classes)
        self.seg_net = build_network(cfg.model, num_classes)

    def reads_hidden_masks(self) -> bool:
        return True  # the labeled batches' hidden masks feed the pseudo-mask accuracy diagnostics

    def students(self):
        return {"net": self.net, "seg_net": self.seg_net}  # both from the start: the optimiser is built once

    def eval_network(self):
        if self.params.eval_net == "cam":
            return ThresholdedCAM(self.net, self.params.threshold, self.params.eval_classes)
        return self.seg_net

    def in_stage2(self, step: int) -> bool:
        return self.phase(step, self.params.stage1)

    def pseudo_masks(self, cams: torch.Tensor, labeled: dict) -> torch.Tensor:
        """Stage-2 targets [B, H, W] from normalised CAMs [B, K, H, W] of the batch's crops: the CAM of the
        image's true classes (``image_labels``, whatever ``labels_from``) thresholded with the band, padding 255."""
        low, high = self.params.band()
        fg = class_labels(labeled, "image")[:, 1:]
        return cam_pseudo_labels(cams, fg, high, low).masked_fill(~labeled["valid"], IGNORE_INDEX)

    @torch.no_grad()
    def frozen_cams(self, image: torch.Tensor) -> torch.Tensor:
        """The classifier's normalised CAMs at the input's size, without gradient and with BN in eval mode (the
        running statistics of stage 1); the classifier's mode is restored afterwards."""
        was_training = self.net.training
        self.net.eval()
        try:
            return dense_cams(self.net(image)["cam"], image.shape[-2:], self.net.grids["cam"])
        finally:
            self.net.train(was_training)

    def training_step(self, labeled, unlabeled, step):
        x = labeled["image"]
        if not self.in_stage2(step):
            fg = class_labels(labeled, self.params.labels_from)[:, 1:]
            out = self.net(x)
            diag = {"cls_acc": ((out["cls"] > 0) == fg).float().mean()}
            with torch.no_grad():  # the masks stage 2 would learn now (classifier in training mode)
                cams = dense_cams(out["cam"], x.shape[-2:], self.net.grids["cam"])
                diag.update(self.mask_diagnostics(self.pseudo_masks(cams, labeled), labeled))
            return StepOutput({"cls": image_classification_loss(out["cls"], fg)}, diag)
        target = self.pseudo_masks(self.frozen_cams(x), labeled)
        logits = self.seg_net(x)
        diag = self.mask_diagnostics(target, labeled)
        if "hidden_mask" in labeled:
            diag["acc/seg"] = accuracy(logits.detach().argmax(1), labeled["hidden_mask"], labeled["valid"])
        return StepOutput({"seg": F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX)}, diag)

    @staticmethod
    def mask_diagnostics(mask: torch.Tensor, labeled: dict) -> dict:
        """Shares of valid pixels that the pseudo-mask gives a class or ignores, and, from the hidden masks
        (diagnostics only, never a loss), its accuracy on the pixels it labels."""
        valid = labeled["valid"]
        n = valid.sum().clamp(min=1)
        ignored = (mask == IGNORE_INDEX) & valid
        diag = {"cam/fg": ((mask != 0) & ~ignored & valid).sum() / n, "cam/ignored": ignored.sum() / n}
        if "hidden_mask" in labeled:
            diag["acc/cam"] = accuracy(mask, labeled["hidden_mask"], valid & ~ignored)
        return diag

    @torch.no_grad()
    def pseudo_labels(self, batch):
        """The CAM pseudo-mask (with the band) as the teacher's label, the winning class's normalised CAM as
        confidence, the segmentation network's argmax as the student's prediction, and the normalised CAMs
        (``cams`` [B, K, H, W]); the batch's image labels choose the classes when it has them, else the
        classifier's predictions (sigmoid > 0.5)."""
        labels = batch.get("image_labels")
        present, cams = ThresholdedCAM(self.net, self.params.threshold, "predicted").classes_and_cams(
            batch["image"], None if labels is None else labels[:, 1:])
        low, high = self.params.band()
        label = cam_pseudo_labels(cams, present, high, low)
        if "valid" in batch:
            label = label.masked_fill(~batch["valid"], IGNORE_INDEX)
        confidence = cams.masked_fill(~present[..., None, None], 0).amax(1)
        student_pred = self.seg_net(batch["image"]).argmax(1)
        return {"teacher_label": label, "confidence": confidence, "student_pred": student_pred, "cams": cams}

METHOD = MethodEntry("cam", CAMBaseline, "CAM pseudo-masks (two stages)", None)


__all__ = ["CAMBaseline", "CAMHead", "CAMNetwork", "CAMParams", "ResNetStages", "ThresholdedCAM", "ViTStages",
           "WeakParams", "build_backbone", "cam_pseudo_labels", "class_labels", "dense_cams",
           "image_classification_loss", "normalise_cams"]
