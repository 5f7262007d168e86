"""DeepLabV3+ over torchvision ResNets, with an optional projection head for pixel contrast.

Large configuration (the papers): ResNet-50/101, layer4 dilated (output stride 16) or layers 3-4
(output stride 8), ASPP rates 6/12/18, 256-channel decoder at 1/4 resolution. CPU configuration (the
embedded default): a quarter-width ResNet-18 with a narrow ASPP/decoder, from scratch or from the
embedded glyph pretraining (``model.pretrained: glyphs``). torchvision refuses to dilate basic blocks,
so for ResNet-18/34 the stride-to-dilation swap is done here (:func:`dilate_basic_layer`).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from reprokit.config import ModelConfig
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


class ResNetBackbone(nn.Module):
    """torchvision ResNet returning (low-level 1/4 feature, high-level feature).

    ``trunk`` lets the glyph pretraining wrap a trunk it trains and saves; by default the trunk is
    built from ``cfg`` with its pretrained weights loaded."""

    def __init__(self, cfg: ModelConfig, trunk: nn.Module | None = None):
        super().__init__()
        net = trunk if trunk is not None else resnet_trunk(cfg, load=True)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool if cfg.stem_maxpool else nn.Identity())
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        last_conv = "conv2" if cfg.backbone in BASIC_DEPTHS else "conv3"
        self.low_channels = getattr(net.layer1[-1], last_conv).out_channels
        self.high_channels = getattr(net.layer4[-1], last_conv).out_channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = self.layer1(self.stem(x))
        return low, self.layer4(self.layer3(self.layer2(low)))


def resnet_trunk(cfg: ModelConfig, load: bool) -> nn.Module:
    """The ResNet with torchvision's module names (conv1, bn1, layer1..layer4), ``cfg.width`` channels
    and its last stages dilated for ``cfg.output_stride``; with ``load``, holding ``cfg.pretrained``.

    The segmentation backbone and the glyph pretraining both build their trunk here, so pretrained
    weights always fit the network they initialise (same widths, same dilations).
    """
    deep = cfg.backbone not in BASIC_DEPTHS
    source = cfg.pretrained if load else None
    if cfg.width != 64:
        net = narrow_resnet(cfg.backbone, cfg.width)
    else:
        kwargs = {"replace_stride_with_dilation": [False, cfg.output_stride == 8, True]} if deep else {}
        net = getattr(torchvision.models, cfg.backbone)(weights="DEFAULT" if source == "imagenet" else None, **kwargs)
    if not deep:
        dilate_basic_layer(net.layer4, 2)
        if cfg.output_stride == 8:
            dilate_basic_layer(net.layer3, 2)
            dilate_basic_layer(net.layer4, 4)
    if source == "glyphs":
        # built on first use (pretrain.py imports this module, hence the late import), then cached
        from reprokit.models.pretrain import ensure_pretrained

        load_pretrained(net, str(ensure_pretrained(cfg)))
    elif source not in (None, "imagenet"):
        load_pretrained(net, source)
    return net


BASIC_DEPTHS = {"resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3]}


def narrow_resnet(name: str, width: int) -> nn.Module:
    """ResNet-18/34 with ``width`` channels in the first stage instead of 64 (then 2x, 4x, 8x).

    torchvision fixes the widths, but the embedded default trains on a CPU, where a narrow network is much
    cheaper (docs/measurements.md) and still large enough for digit scenes. The
    attribute names match torchvision's so the rest of the backbone code is shared.
    """
    from torchvision.models.resnet import BasicBlock

    net = nn.Module()
    net.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
    net.bn1, net.relu, net.maxpool = nn.BatchNorm2d(width), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
    inplanes = width
    for stage, blocks in enumerate(BASIC_DEPTHS[name]):
        planes, stride = width * 2 ** stage, 1 if stage == 0 else 2
        layer = []
        for i in range(blocks):
            down = None
            if i == 0 and (stride != 1 or inplanes != planes):
                down = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
            layer.append(BasicBlock(inplanes, planes, stride if i == 0 else 1, down))
            inplanes = planes
        setattr(net, f"layer{stage + 1}", nn.Sequential(*layer))
    return net


def dilate_basic_layer(layer: nn.Sequential, dilation: int) -> None:
    """Turn a strided stage of basic blocks into a dilated one (same weights, stride 1)."""
    for block in layer:
        for conv in (block.conv1, block.conv2):
            conv.stride, conv.dilation, conv.padding = (1, 1), (dilation, dilation), (dilation, dilation)
        if block.downsample is not None:
            block.downsample[0].stride = (1, 1)


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
        self.backbone = ResNetBackbone(cfg)
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
