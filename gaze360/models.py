"""One configurable multi-crop / multi-frame gaze model covering the seven variants of MultiZoomGaze.

Input: images [B, L, 3, S, S], L = num_frames x crops in frame-major order (all crop copies of frame t-k, then of
t-k+1, ...). Each image -> (optional spatial transformer) -> ResNet -> Linear(feature_size) + ReLU; the sequence of
features is combined by an LSTM (one output index is read), an element-wise max over the sequence, or not at all
(one image). A linear head gives the target and an uncertainty sigma:
  yawpitch: (yaw, pitch) = (pi tanh, pi/2 tanh), radians;  sincos: (sin yaw, cos yaw, sin pitch) = tanh;
  sigma = pi sigmoid (one value per sample, broadcast over the outputs in the pinball loss).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.resnet import BasicBlock, Bottleneck, ResNet
from pretrained.loading import load_init_weights

# The variants of original_system.md section 5 as option values (the shipped configs/gaze360/<name>.yaml set these).
CROPS = [224, 200, 175, 150]
VARIANTS = {
    "static": dict(num_frames=1, crop_sizes=[224], symmetric_crops=False, temporal="none", target="yawpitch",
                   loss="pinball"),
    "static_sc": dict(num_frames=1, crop_sizes=[224], symmetric_crops=False, temporal="none", target="sincos",
                      loss="sincos_pinball"),
    "static_sc_lstm": dict(num_frames=1, crop_sizes=CROPS, symmetric_crops=False, temporal="lstm",
                           lstm_bidirectional=False, target_index="last", target="sincos", loss="sincos_pinball"),
    "static_sc_lstm_sym": dict(num_frames=1, crop_sizes=CROPS, symmetric_crops=True, temporal="lstm",
                               lstm_bidirectional=True, target_index="middle", target="sincos", loss="sincos_pinball"),
    "seq_lstm": dict(num_frames=7, crop_sizes=[224], symmetric_crops=False, temporal="lstm", lstm_bidirectional=True,
                     target_index="middle", target="yawpitch", loss="pinball"),
    "seq_sc_lstm": dict(num_frames=7, crop_sizes=CROPS, symmetric_crops=False, temporal="lstm",
                        lstm_bidirectional=True, target_index="last", target="sincos", loss="sincos_pinball"),
    "seq_sc_lstm_sym": dict(num_frames=7, crop_sizes=CROPS, symmetric_crops=True, temporal="lstm",
                            lstm_bidirectional=True, target_index="middle", target="sincos", loss="sincos_pinball"),
}
TARGET_SIZE = {"yawpitch": 2, "sincos": 3}


class SpatialTransformer(nn.Module):
    """An affine spatial transformer (Jaderberg et al. 2015) initialised to the identity, so training starts from
    the untransformed image. Its localisation net is small: the original's was never published."""

    def __init__(self):
        super().__init__()
        self.localisation = nn.Sequential(
            nn.Conv2d(3, 8, kernel_size=7, padding=3), nn.MaxPool2d(2), nn.ReLU(inplace=True),
            nn.Conv2d(8, 10, kernel_size=5, padding=2), nn.MaxPool2d(2), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(160, 32), nn.ReLU(inplace=True), nn.Linear(32, 6),
        )
        nn.init.zeros_(self.localisation[-1].weight)
        with torch.no_grad():
            self.localisation[-1].bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta = self.localisation(x).view(-1, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, align_corners=False)


class MultiCropGazeModel(nn.Module):
    """See the module docstring. `target_index`: "middle" reads output L // 2; "last" reads the last crop copy of
    the labelled (central) frame, i.e. index (num_frames // 2) * crops + crops - 1 (= L - 1 for one frame)."""

    def __init__(self, *, num_frames: int, num_crops: int, backbone_layers=(2, 2, 2, 2), backbone_block="basic",
                 backbone_inplanes=64, backbone_fc=1000, feature_size=256, spatial_transformer=False,
                 temporal="lstm", lstm_layers=2, lstm_bidirectional=True, target_index="middle", target="sincos"):
        super().__init__()
        self.sequence_length = num_frames * num_crops
        if temporal == "none" and self.sequence_length != 1:
            raise ValueError(f"temporal 'none' takes one image per sample, got {num_frames} frames x {num_crops} crops")
        if target_index == "middle":
            self.target_index = self.sequence_length // 2
        elif target_index == "last":
            self.target_index = (num_frames // 2) * num_crops + num_crops - 1
        else:
            raise ValueError(f"target_index must be 'middle' or 'last', found {target_index!r}")
        self.temporal, self.target = temporal, target
        self.stn = SpatialTransformer() if spatial_transformer else None
        block = {"basic": BasicBlock, "bottleneck": Bottleneck}[backbone_block]
        self.backbone = ResNet(block, backbone_layers, inplanes=backbone_inplanes, num_classes=backbone_fc or None)
        self.feature = nn.Sequential(nn.Linear(backbone_fc or self.backbone.out_channels, feature_size),
                                     nn.ReLU(inplace=True))
        head_in = feature_size
        self.lstm = None
        if temporal == "lstm":
            self.lstm = nn.LSTM(feature_size, feature_size, num_layers=lstm_layers, bidirectional=lstm_bidirectional,
                                batch_first=True)
            head_in = feature_size * (2 if lstm_bidirectional else 1)
        self.head = nn.Linear(head_in, TARGET_SIZE[target] + 1)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """[B, L, 3, S, S] -> [B, L, feature_size]."""
        batch, length = images.shape[:2]
        x = images.flatten(0, 1)
        if self.stn is not None:
            x = self.stn(x)
        x = self.backbone(x)
        if x.dim() == 4:  # backbone_fc = 0: global average pool of the last feature map
            x = x.mean(dim=(2, 3))
        return self.feature(x).view(batch, length, -1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if images.dim() != 5 or images.shape[1] != self.sequence_length:
            raise ValueError(f"expected images [B, {self.sequence_length}, 3, S, S], found {list(images.shape)}")
        features = self.image_features(images)
        if self.temporal == "lstm":
            features = self.lstm(features)[0][:, self.target_index]
        elif self.temporal == "maxpool":
            features = features.max(dim=1).values
        else:
            features = features[:, 0]
        raw = self.head(features)
        if self.target == "yawpitch":
            output = torch.stack([math.pi * torch.tanh(raw[:, 0]), math.pi / 2 * torch.tanh(raw[:, 1])], dim=1)
        else:
            output = torch.tanh(raw[:, :3])
        return {"output": output, "sigma": math.pi * torch.sigmoid(raw[:, -1:])}


def decode_yaw_pitch(output: torch.Tensor, target: str) -> torch.Tensor:
    """Model output -> [B, 2] (yaw, pitch) radians. sincos: yaw = atan2(sin, cos) (wrap-aware: no average of raw
    angles across the +-pi seam), pitch = asin(clamped sin pitch)."""
    if target == "yawpitch":
        return output
    return torch.stack([torch.atan2(output[:, 0], output[:, 1]), torch.asin(output[:, 2].clamp(-1.0, 1.0))], dim=1)


def mean_yaw_pitch(yaw_pitch: torch.Tensor, dim: int) -> torch.Tensor:
    """Average (yaw, pitch) predictions over `dim` with the circular mean of yaw (atan2 of the mean sin and cos):
    the mean of 179 deg and -179 deg is 180 deg, not 0."""
    yaw, pitch = yaw_pitch[..., 0], yaw_pitch[..., 1]
    mean_yaw = torch.atan2(torch.sin(yaw).mean(dim), torch.cos(yaw).mean(dim))
    return torch.stack([mean_yaw, pitch.mean(dim)], dim=-1)


def build_model(config, num_crops: int) -> MultiCropGazeModel:
    return MultiCropGazeModel(
        num_frames=config.num_frames, num_crops=num_crops, backbone_layers=config.backbone_layers,
        backbone_block=config.backbone_block, backbone_inplanes=config.backbone_inplanes,
        backbone_fc=config.backbone_fc, feature_size=config.feature_size,
        spatial_transformer=config.spatial_transformer, temporal=config.temporal, lstm_layers=config.lstm_layers,
        lstm_bidirectional=config.lstm_bidirectional, target_index=config.target_index, target=config.target)


def load_backbone_weights(model: MultiCropGazeModel, path: str) -> None:
    """Load torchvision-named ImageNet weights (fc included, so nothing of the backbone stays random: the original
    left its custom ResNet's first fc layer random). Any missing backbone tensor is an error."""
    report = load_init_weights(model.backbone, path, scheme=None, extra_rules=[[r"^(.*)$", r"\1"]])
    print(report.summary())
    if report.missing:
        raise RuntimeError(f"{path}: {len(report.missing)} backbone tensors are missing, e.g. {report.missing[:5]}; "
                           f"check backbone_layers / backbone_block / backbone_fc against the weight file")
