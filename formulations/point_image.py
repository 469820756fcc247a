"""diffusion_target: point_image, the earlier DiffusionGaze branch `point_image_diffusion` (Dec 2023): trained as the
point formulation, but the heatmap rendered at the noisy point is scaled to [-0.1, 0.1], noised again to the same t
and std-normalised (norm_std_flag) before the UNet, which predicts the clean [0, 1] heatmap. Its network was thus
trained on noised heatmaps, so it samples a heatmap state with the heatmap samplers, the state std-normalised at every
step, and the heatmap scored is the sampled x0 as it is."""
from __future__ import annotations

import torch

from diffusion.normalization import std_normalize
from formulations.base import register_formulation
from formulations.heatmap import HeatmapFormulation
from formulations.point import POINT_IMAGE_HEATMAP_SCALE, PointTraining


@register_formulation("point_image")
class PointImageFormulation(PointTraining, HeatmapFormulation):
    """PointTraining's losses (with the second noising) and HeatmapFormulation's samplers."""

    heatmap_noise_scale = POINT_IMAGE_HEATMAP_SCALE
    original_output_scale = POINT_IMAGE_HEATMAP_SCALE  # the original's point_image code un-normalised by 0.1

    def state_fn(self):
        """The sampling state divided by its std at every step, as its network's input was in training."""
        return std_normalize if self.config.compat_original_std_state or self.config.norm_std_flag else None

    def to_heatmap(self, x: torch.Tensor) -> torch.Tensor:
        """The network's x0 is the [0, 1] target heatmap itself (only its input was scaled)."""
        return x
