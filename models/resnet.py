"""Configurable ResNet on torchvision's blocks, with torchvision's parameter names, so ImageNet weight files load.

The blocks are torchvision's `BasicBlock` and `Bottleneck` (the "v1.5" Bottleneck, stride on the 3x3), and the
standard depths are torchvision's own (`torchvision.models.resnet18/34/50`). The `ResNet` class stays here because
torchvision's has exactly four layers, a 64-wide stem and 3 input channels, while the gaze models need the fifth layer
of Chong et al. 2020 (256 planes at stride 1: a Bottleneck ResNet-50 with layers [3, 4, 6, 3, 2] maps a 224 x 224
input to 1024 x 7 x 7), other stem widths and a 4-channel (RGB + head mask) input.
"""

from typing import Sequence

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

# (planes as a multiple of the stem width, stride) of each layer. The first four are torchvision's ResNet; the
# fifth is the extra layer of Chong et al.'s gaze backbone, which halves the channels at the same resolution.
DEFAULT_LAYER_PLAN = ((1, 1), (2, 2), (4, 2), (8, 2), (4, 1))


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
