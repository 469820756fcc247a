"""Configurable ResNet (BasicBlock / Bottleneck) with torchvision's parameter names, so ImageNet weight files load.

Besides torchvision's four layers it supports the gaze models' fifth layer (Chong et al. 2020): 256 planes at
stride 1, so a Bottleneck ResNet-50 with layers [3, 4, 6, 3, 2] maps a 224 x 224 input to 1024 x 7 x 7.
"""

from typing import Sequence

import torch
from torch import nn

# (planes as a multiple of the stem width, stride) of each layer. The first four are torchvision's ResNet; the
# fifth is the extra layer of Chong et al.'s gaze backbone, which halves the channels at the same resolution.
DEFAULT_LAYER_PLAN = ((1, 1), (2, 2), (4, 2), (8, 2), (4, 1))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut; ResNet-18/34."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride: torchvision's "v1.5"), 1x1 expand by 4; ResNet-50, gaze backbones."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


class ResNet(nn.Module):
    """ResNet feature extractor: stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool) then `layer1..layerN`.

    Without `num_classes` forward returns the last feature map [B, out_channels, h, w]; with it, torchvision's
    classifier (global average pool, `fc`) gives logits [B, num_classes].

    Args:
        block: BasicBlock or Bottleneck.
        layers: number of blocks per layer, any length >= 1.
        inplanes: stem width (torchvision: 64); the layers' planes are this times the plan's multiples.
        in_channels: input channels (3 for RGB, 4 for RGB + binary head mask).
        num_classes: size of the classification head, or None for a feature extractor.
        layer_plan: (planes multiple, stride) per layer; defaults to DEFAULT_LAYER_PLAN, which covers 5 layers.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        inplanes: int = 64,
        in_channels: int = 3,
        num_classes: int | None = None,
        layer_plan: Sequence[tuple[int, int]] | None = None,
    ):
        super().__init__()
        layers = list(layers)
        plan = list(layer_plan if layer_plan is not None else DEFAULT_LAYER_PLAN)
        if not layers or any(int(n) < 1 for n in layers):
            raise ValueError(f"ResNet layers must be a non-empty list of block counts >= 1, got {layers}")
        if len(layers) > len(plan):
            raise ValueError(
                f"ResNet layers {layers} has {len(layers)} layers but the layer plan {plan} describes only "
                f"{len(plan)}; pass layer_plan with (planes multiple, stride) for every layer"
            )
        self.strides = [1, 2, 2]  # stem conv and max-pool, then one entry per layer
        self.conv1 = nn.Conv2d(in_channels, inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        channels = inplanes
        self.layer_names = []
        for index, (num_blocks, (multiple, stride)) in enumerate(zip(layers, plan), start=1):
            layer, channels = _make_layer(block, channels, inplanes * multiple, int(num_blocks), stride)
            setattr(self, f"layer{index}", layer)
            self.layer_names.append(f"layer{index}")
            self.strides.append(stride)
        self.out_channels = channels
        self.fc = nn.Linear(channels, num_classes) if num_classes is not None else None
        self._init_weights()

    def _init_weights(self) -> None:
        # He initialisation on fan-out, as torchvision and the gaze originals (normal(0, sqrt(2 / (k*k*out)))).
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def output_size(self, input_size: int) -> int:
        """Side of the output feature map for a square input of `input_size` pixels."""
        size = input_size
        for stride in self.strides:
            # Every strided op here (7x7/p3, 3x3/p1, 1x1/p0 shortcut) maps n to floor((n - 1) / stride) + 1.
            size = (size - 1) // stride + 1
        return size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self.layer_names:
            x = getattr(self, name)(x)
        if self.fc is None:
            return x
        return self.fc(x.mean(dim=(2, 3)))


def _make_layer(block, inplanes: int, planes: int, num_blocks: int, stride: int) -> tuple[nn.Sequential, int]:
    out_channels = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != out_channels:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, out_channels, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(out_channels),
        )
    blocks = [block(inplanes, planes, stride, downsample)]
    blocks += [block(out_channels, planes) for _ in range(1, num_blocks)]
    return nn.Sequential(*blocks), out_channels


def resnet18(num_classes: int | None = 1000, in_channels: int = 3) -> ResNet:
    """torchvision's ResNet-18 layout (11,689,512 parameters with the 1000-class head)."""
    return ResNet(BasicBlock, [2, 2, 2, 2], in_channels=in_channels, num_classes=num_classes)


def resnet34(num_classes: int | None = 1000, in_channels: int = 3) -> ResNet:
    """torchvision's ResNet-34 layout (21,797,672 parameters with the 1000-class head)."""
    return ResNet(BasicBlock, [3, 4, 6, 3], in_channels=in_channels, num_classes=num_classes)


def resnet50(num_classes: int | None = 1000, in_channels: int = 3) -> ResNet:
    """torchvision's ResNet-50 layout (25,557,032 parameters with the 1000-class head)."""
    return ResNet(Bottleneck, [3, 4, 6, 3], in_channels=in_channels, num_classes=num_classes)
