"""DeepLabV3+ over torchvision ResNets, with an optional projection head for pixel contrast.

Large configuration (the papers): ResNet-50/101, layer4 dilated (output stride 16) or layers 3-4
(output stride 8), ASPP rates 6/12/18, 256-channel decoder at 1/4 resolution. CPU configuration (the
embedded default): a quarter-width ResNet-18 with a narrow ASPP/decoder, from scratch or from the
embedded glyph pretraining (``model.pretrained: glyphs``). The trunk itself is built in
:mod:`reprokit.models.resnet`, which the glyph pretraining shares.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from reprokit.config import ModelConfig
from reprokit.models.pretrain import ensure_pretrained
from reprokit.models.resnet import ResNetBackbone, resnet_trunk
from reprokit.records import TensorFileError, load_tensors


class CheckpointKeyError(RuntimeError):
    """Pretrained weights on disk do not fit the backbone."""


def conv_bn_relu(cin: int, cout: int, k: int = 3, dilation: int = 1) -> nn.Sequential:
    pad = 0 if k == 1 else dilation
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, three dilated 3x3 and an image-pooling branch."""

    def __init__(self, cin: int, cout: int, rates: list[int]):
        super().__init__()
        self.branches = nn.ModuleList([conv_bn_relu(cin, cout, 1)] + [conv_bn_relu(cin, cout, 3, r) for r in rates])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False),
                                  nn.BatchNorm2d(cout), nn.ReLU(inplace=True))
        self.project = conv_bn_relu(cout * (len(rates) + 2), cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.interpolate(self.pool(x), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class ProjectionHead(nn.Module):
    """conv3x3 -> BN -> ReLU -> Dropout2d -> conv1x1 on the decoder feature (STPG's contrastive head)."""

    def __init__(self, cin: int, dim: int, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(cin, cin, 3, padding=1, bias=False), nn.BatchNorm2d(cin),
                                 nn.ReLU(inplace=True), nn.Dropout2d(dropout), nn.Conv2d(cin, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def pretrained_trunk(cfg: ModelConfig) -> nn.Module:
    """The configured ResNet trunk (:func:`reprokit.models.resnet.resnet_trunk`) holding ``cfg.pretrained``:
    torchvision's ImageNet weights, the glyph pretraining (built on first use, then cached) or a weights file."""
    source = cfg.pretrained
    net = resnet_trunk(cfg, imagenet=source == "imagenet")
    if source == "glyphs":
        load_pretrained(net, str(ensure_pretrained(cfg)))
    elif source not in (None, "imagenet"):
        load_pretrained(net, source)
    return net


def load_pretrained(net: nn.Module, path: str) -> None:
    """Load backbone weights (ImageNet, the glyph pretraining, ...) from a local file; mismatched keys
    or shapes (e.g. full-width weights for a narrow trunk) are an error naming the file."""
    file = Path(path)
    if not file.is_file():
        raise CheckpointKeyError(f"model.pretrained: file not found: {file}")
    try:
        state = load_tensors(file)
    except TensorFileError as exc:
        raise CheckpointKeyError(f"model.pretrained: {exc}") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    state = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    expected = {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    if missing or unexpected:
        raise CheckpointKeyError(
            f"model.pretrained: {file} does not match the backbone: {len(missing)} missing keys "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
    reshaped = [k for k, v in state.items() if v.shape != expected[k].shape]
    if reshaped:
        raise CheckpointKeyError(
            f"model.pretrained: {file} does not match the backbone's shapes ({len(reshaped)} tensors, e.g. "
            f"{reshaped[0]}: {tuple(state[reshaped[0]].shape)} in the file, {tuple(expected[reshaped[0]].shape)} "
            f"in the model; check model.width and model.backbone)")
    net.load_state_dict(state, strict=False)


class DeepLabV3Plus(nn.Module):
    """Forward returns logits at input resolution; ``return_features`` adds the decoder feature
    (1/4 resolution) and, when a projection head exists, its projections."""

    def __init__(self, cfg: ModelConfig, num_classes: int):
        super().__init__()
        self.backbone = ResNetBackbone(cfg, pretrained_trunk(cfg))
        self.aspp = ASPP(self.backbone.high_channels, cfg.aspp_channels, cfg.aspp_rates)
        self.reduce = conv_bn_relu(self.backbone.low_channels, cfg.low_level_channels, 1)
        self.fuse = nn.Sequential(conv_bn_relu(cfg.aspp_channels + cfg.low_level_channels, cfg.decoder_channels),
                                  conv_bn_relu(cfg.decoder_channels, cfg.decoder_channels))
        self.classifier = nn.Sequential(nn.Dropout2d(cfg.dropout), nn.Conv2d(cfg.decoder_channels, num_classes, 1))
        self.projector = ProjectionHead(cfg.decoder_channels, cfg.proj_dim, cfg.dropout) if cfg.proj_dim else None

    def forward(self, x: torch.Tensor, return_features: bool = False):
        low, high = self.backbone(x)
        high = F.interpolate(self.aspp(high), size=low.shape[-2:], mode="bilinear", align_corners=False)
        feat = self.fuse(torch.cat([high, self.reduce(low)], dim=1))
        logits = F.interpolate(self.classifier(feat), size=x.shape[-2:], mode="bilinear", align_corners=False)
        if not return_features:
            return logits
        out = {"logits": logits, "features": feat}
        if self.projector is not None:
            out["proj"] = self.projector(feat)
        return out


def build_network(cfg: ModelConfig, num_classes: int) -> DeepLabV3Plus:
    """One segmentation network (a method may own several: students, teachers)."""
    return DeepLabV3Plus(cfg, num_classes)
