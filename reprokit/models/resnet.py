"""The ResNet trunks of every network: torchvision's ResNets and the narrow ResNet-18/34 of the CPU configuration,
dilated for the output stride. torchvision refuses to dilate basic blocks, so for ResNet-18/34 the
stride-to-dilation swap is done here (:func:`dilate_basic_layer`). No weights are loaded here but torchvision's
own: the segmentation network loads its pretrained weights (:mod:`reprokit.models.deeplab`), and the glyph
pretraining that makes some of them (:mod:`reprokit.models.pretrain`) builds its trunk here too.
"""
from __future__ import annotations

import torch
import torchvision
from torch import nn

from reprokit.config import ModelConfig


class ResNetBackbone(nn.Module):
    """A ResNet trunk (:func:`resnet_trunk`) returning (low-level 1/4 feature, high-level feature). The trunk is
    handed in: the segmentation network gives one holding its pretrained weights
    (:func:`reprokit.models.deeplab.pretrained_trunk`), the glyph pretraining the one it trains."""

    def __init__(self, cfg: ModelConfig, trunk: nn.Module):
        super().__init__()
        self.stem = nn.Sequential(trunk.conv1, trunk.bn1, trunk.relu,
                                  trunk.maxpool if cfg.stem_maxpool else nn.Identity())
        self.layer1, self.layer2, self.layer3, self.layer4 = trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4
        last_conv = "conv2" if cfg.backbone in BASIC_DEPTHS else "conv3"
        self.low_channels = getattr(trunk.layer1[-1], last_conv).out_channels
        self.high_channels = getattr(trunk.layer4[-1], last_conv).out_channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = self.layer1(self.stem(x))
        return low, self.layer4(self.layer3(self.layer2(low)))


def resnet_trunk(cfg: ModelConfig, imagenet: bool = False) -> nn.Module:
    """The ResNet with torchvision's module names (conv1, bn1, layer1..layer4), ``cfg.width`` channels
    and its last stages dilated for ``cfg.output_stride``; with ``imagenet``, torchvision's weights.

    The segmentation backbone and the glyph pretraining both build their trunk here, so pretrained
    weights always fit the network they initialise (same widths, same dilations).
    """
    deep = cfg.backbone not in BASIC_DEPTHS
    if cfg.width != 64:
        net = narrow_resnet(cfg.backbone, cfg.width)
    else:
        kwargs = {"replace_stride_with_dilation": [False, cfg.output_stride == 8, True]} if deep else {}
        net = getattr(torchvision.models, cfg.backbone)(weights="DEFAULT" if imagenet else None, **kwargs)
    if not deep:
        dilate_basic_layer(net.layer4, 2)
        if cfg.output_stride == 8:
            dilate_basic_layer(net.layer3, 2)
            dilate_basic_layer(net.layer4, 4)
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
