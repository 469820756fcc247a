"""One configurable multi-zoom gaze model that is, option for option, each network of MultiZoomGaze / Gaze360.

Input: images [B, L, 3, S, S] (the sequence built by gaze360.data: one image per (frame, crop) pair).
Per image: (optional spatial transformer) -> ResNet trunk -> global average pool -> `fc` (backbone_fc, 1000 =
ImageNet classifier) -> ReLU -> `feature` Linear(feature_size) [-> ReLU when feature_relu]. This is the original's
order (`backbones/resnet.py`: fc1 -> ReLU -> fc2); its static models add the ReLU after fc2 (`static_model.py`),
its LSTM and multi-crop models do not.

Fusion of the L images (`temporal`):
  none         one image per sample;
  lstm         LSTM over the L feature vectors, output `target_index` read (middle L // 2, last L - 1, or
               central_frame_last: the last crop copy of the central frame in the `frame_crops: all` layout);
  maxpool      element-wise max over the L feature vectors (the original's AggregationType.MAX);
  spatial_max  element-wise max over the L final feature MAPS of the trunk, before pooling and fc (the
               original's AggregationType.SPATIAL_MAX, its published MSA models);
  attention    softmax attention weights over the L feature vectors (the original's ChannelAttention: per input
               i, tanh(W_i f_i) of attention_dim, concatenated, Linear to L scores), then their weighted sum.

Head: Linear(head_in, K + 1): yawpitch -> (yaw, pitch) = (pi tanh, pi/2 tanh), radians; sincos -> (sin yaw,
cos yaw, sin pitch) = tanh (sincos45 adds sin/cos(yaw + 45 deg)); the last unit is the uncertainty
sigma = sigma_scale * sigmoid (pi, or 1 as the original's StaticSC). `with_sigma: false` drops that unit (the
original's RT-GENE model without uncertainty; train with loss mse).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gaze360.options import crop_list, sequence_length
from models.resnet import BasicBlock, Bottleneck, ResNet
from pretrained.loading import CheckpointError, load_init_weights

TARGET_SIZE = {"yawpitch": 2, "sincos": 3, "sincos45": 5}
SIGMA_SCALE = {"pi": math.pi, "one": 1.0}
TEMPORAL = ("none", "lstm", "maxpool", "spatial_max", "attention")


class SpatialTransformer(nn.Module):
    """An affine spatial transformer (Jaderberg et al. 2015) initialised to the identity, so training starts from
    the untransformed image. This project's own design: the original's localisation net was never published."""

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


class AttentionFusion(nn.Module):
    """Softmax-weighted sum of L feature vectors; the weights come from tanh(W_i f_i) (one Linear per input i,
    attention_dim wide), concatenated and mapped to L scores."""

    def __init__(self, num_inputs: int, feature_size: int, attention_dim: int):
        super().__init__()
        self.project = nn.ModuleList(nn.Linear(feature_size, attention_dim) for _ in range(num_inputs))
        self.score = nn.Linear(attention_dim * num_inputs, num_inputs)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        latent = torch.cat([torch.tanh(w(features[:, i])) for i, w in enumerate(self.project)], dim=1)
        weights = torch.softmax(self.score(latent), dim=-1)
        return (features * weights.unsqueeze(-1)).sum(dim=1)


def sequence_index(target_index: str, length: int, num_frames: int, num_crops: int) -> int:
    """The LSTM output read: middle = L // 2, last = L - 1, central_frame_last = last crop of the central frame in
    the frame-major `frame_crops: all` layout ((num_frames // 2) * crops + crops - 1)."""
    if target_index == "middle":
        return length // 2
    if target_index == "last":
        return length - 1
    if target_index == "central_frame_last":
        if length != num_frames * num_crops:
            raise ValueError("target_index 'central_frame_last' needs the frame_crops 'all' layout")
        return (num_frames // 2) * num_crops + num_crops - 1
    raise ValueError(f"target_index must be 'middle', 'last' or 'central_frame_last', found {target_index!r}")


class MultiCropGazeModel(nn.Module):
    """See the module docstring. `sequence_length` = L, the images per sample."""

    def __init__(self, *, sequence_length: int, num_frames: int = 1, num_crops: int = 1, backbone_layers=(2, 2, 2, 2),
                 backbone_block="basic", backbone_inplanes=64, backbone_fc=1000, feature_size=256,
                 feature_relu=False, spatial_transformer=False, temporal="lstm", lstm_layers=2,
                 lstm_bidirectional=True, target_index="middle", target="sincos", sigma_scale="pi",
                 with_sigma=True, attention_dim=128):
        super().__init__()
        self.sequence_length = sequence_length
        if temporal not in TEMPORAL:
            raise ValueError(f"temporal must be one of {TEMPORAL}, found {temporal!r}")
        if temporal == "none" and sequence_length != 1:
            raise ValueError(f"temporal 'none' takes one image per sample, got a sequence of {sequence_length}")
        self.target_index = sequence_index(target_index, sequence_length, num_frames, num_crops)
        self.temporal, self.target, self.feature_relu = temporal, target, feature_relu
        self.sigma_scale = SIGMA_SCALE[sigma_scale] if with_sigma else None
        self.stn = SpatialTransformer() if spatial_transformer else None
        block = {"basic": BasicBlock, "bottleneck": Bottleneck}[backbone_block]
        # backbone.fc is the ImageNet classifier position (the original's fc1), applied after pooling by this
        # class, so the spatial max can act on the trunk's feature maps before it.
        self.backbone = ResNet(block, backbone_layers, inplanes=backbone_inplanes, num_classes=backbone_fc or None)
        self.feature = nn.Linear(backbone_fc or self.backbone.out_channels, feature_size)
        head_in = feature_size
        self.lstm = self.attention = None
        if temporal == "lstm":
            self.lstm = nn.LSTM(feature_size, feature_size, num_layers=lstm_layers, bidirectional=lstm_bidirectional,
                                batch_first=True)
            head_in = feature_size * (2 if lstm_bidirectional else 1)
        elif temporal == "attention":
            self.attention = AttentionFusion(sequence_length, feature_size, attention_dim)
        self.head = nn.Linear(head_in, TARGET_SIZE[target] + (1 if with_sigma else 0))

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, S, S] -> the trunk's last feature maps [N, C, h, w]."""
        if self.stn is not None:
            x = self.stn(x)
        b = self.backbone
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        for name in b.layer_names:
            x = getattr(b, name)(x)
        return x

    def embed(self, maps: torch.Tensor) -> torch.Tensor:
        """Feature maps [N, C, h, w] -> per-image features [N, feature_size]: pool -> fc -> ReLU -> feature."""
        x = maps.mean(dim=(2, 3))
        if self.backbone.fc is not None:
            x = F.relu(self.backbone.fc(x))
        x = self.feature(x)
        return F.relu(x) if self.feature_relu else x

    def fused_features(self, images: torch.Tensor) -> torch.Tensor:
        batch, length = images.shape[:2]
        maps = self.feature_maps(images.flatten(0, 1))
        if self.temporal == "spatial_max":
            return self.embed(maps.view(batch, length, *maps.shape[1:]).max(dim=1).values)
        features = self.embed(maps).view(batch, length, -1)
        if self.temporal == "lstm":
            return self.lstm(features)[0][:, self.target_index]
        if self.temporal == "maxpool":
            return features.max(dim=1).values
        if self.temporal == "attention":
            return self.attention(features)
        return features[:, 0]

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if images.dim() != 5 or images.shape[1] != self.sequence_length:
            raise ValueError(f"expected images [B, {self.sequence_length}, 3, S, S], found {list(images.shape)}")
        raw = self.head(self.fused_features(images))
        if self.target == "yawpitch":
            output = torch.stack([math.pi * torch.tanh(raw[:, 0]), math.pi / 2 * torch.tanh(raw[:, 1])], dim=1)
        else:
            output = torch.tanh(raw[:, :TARGET_SIZE[self.target]])
        if self.sigma_scale is None:
            return {"output": output, "sigma": torch.zeros_like(output[:, :1])}
        return {"output": output, "sigma": self.sigma_scale * torch.sigmoid(raw[:, -1:])}


# --- decoding -------------------------------------------------------------------------------------------------


def average_yaw(yaw_a: torch.Tensor, yaw_b: torch.Tensor) -> torch.Tensor:
    """The original's average of two yaw estimates (core/gaze_utils.average_angle): shift the first by -2pi, 0 or
    +2pi to the copy nearest the second, average, wrap the mean into [-pi, pi]."""
    shifts = torch.stack([yaw_a - 2 * math.pi - yaw_b, yaw_a - yaw_b, yaw_a + 2 * math.pi - yaw_b], dim=1).abs()
    yaw_a = yaw_a + (shifts.argmin(dim=1) - 1) * 2 * math.pi
    mean = (yaw_a + yaw_b) / 2
    mean = torch.where(mean > math.pi, mean - 2 * math.pi, mean)
    return torch.where(mean < -math.pi, mean + 2 * math.pi, mean)


def original_yaw(sin_yaw: torch.Tensor, cos_yaw: torch.Tensor) -> torch.Tensor:
    """MultiZoomGaze's yaw (sinecosine_model/train_utils.compute_yaw_pitch): the average of a cos-based estimate
    (acos(cos), sign of sin) and a sin-based one (asin(sin), mirrored to the back when cos < 0). On non-unit
    (sin, cos) pairs the two disagree and their average is not the direction atan2 gives."""
    from_cos = torch.acos(cos_yaw)
    from_cos = torch.where(sin_yaw < 0, -from_cos, from_cos)
    from_sin = torch.asin(sin_yaw)
    back, positive = cos_yaw < 0, from_sin >= 0
    from_sin = torch.where(back & positive, math.pi - from_sin, torch.where(back, -math.pi - from_sin, from_sin))
    return average_yaw(from_cos, from_sin)


def decode_yaw_pitch(output: torch.Tensor, target: str, yaw_decoding: str = "atan2") -> torch.Tensor:
    """Model output -> [B, 2] (yaw, pitch) radians. sin-cos targets: pitch = asin(sin pitch) (clamped); yaw by
    `yaw_decoding`: atan2(sin, cos) (wrap-safe; this project's choice) or the original's average of the cos- and
    sin-based estimates. Equal on unit (sin, cos) pairs."""
    if target == "yawpitch":
        return output
    sin_yaw, cos_yaw = output[:, 0], output[:, 1]
    if yaw_decoding == "atan2":
        yaw = torch.atan2(sin_yaw, cos_yaw)
    elif yaw_decoding == "original":
        yaw = original_yaw(sin_yaw.clamp(-1.0, 1.0), cos_yaw.clamp(-1.0, 1.0))
    else:
        raise ValueError(f"yaw_decoding must be 'atan2' or 'original', found {yaw_decoding!r}")
    return torch.stack([yaw, torch.asin(output[:, 2].clamp(-1.0, 1.0))], dim=1)


def mean_yaw_pitch(yaw_pitch: torch.Tensor, dim: int) -> torch.Tensor:
    """Average (yaw, pitch) predictions over `dim` with the circular mean of yaw (atan2 of the mean sin and cos):
    the mean of 179 deg and -179 deg is 180 deg, not 0."""
    yaw, pitch = yaw_pitch[..., 0], yaw_pitch[..., 1]
    mean_yaw = torch.atan2(torch.sin(yaw).mean(dim), torch.cos(yaw).mean(dim))
    return torch.stack([mean_yaw, pitch.mean(dim)], dim=-1)


# --- building ---------------------------------------------------------------------------------------------------


def build_model(config, num_crops: int | None = None) -> MultiCropGazeModel:
    num_crops = len(crop_list(config)) if num_crops is None else num_crops
    return MultiCropGazeModel(
        sequence_length=sequence_length(config), num_frames=config.num_frames, num_crops=num_crops,
        backbone_layers=config.backbone_layers, backbone_block=config.backbone_block,
        backbone_inplanes=config.backbone_inplanes, backbone_fc=config.backbone_fc, feature_size=config.feature_size,
        feature_relu=config.feature_relu, spatial_transformer=config.spatial_transformer, temporal=config.temporal,
        lstm_layers=config.lstm_layers, lstm_bidirectional=config.lstm_bidirectional,
        target_index=config.target_index, target=config.target, sigma_scale=config.sigma_scale,
        with_sigma=config.with_sigma, attention_dim=config.attention_dim)


def load_backbone_weights(model: MultiCropGazeModel, path: str) -> None:
    """Load torchvision-named ImageNet weights (fc included, so nothing of the backbone stays random: the original
    left its custom ResNet's first fc layer random). Any missing backbone tensor is an error."""
    report = load_init_weights(model.backbone, path, scheme=None, extra_rules=[[r"^(.*)$", r"\1"]])
    print(report.summary())
    if report.missing:
        raise CheckpointError(f"{path}: {len(report.missing)} backbone tensors are missing, e.g. "
                              f"{report.missing[:5]}; check backbone_layers / backbone_block / backbone_fc against the "
                              "weight file")
