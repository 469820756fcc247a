"""The point formulation of the later DiffusionGaze branches (`point_image_diffusion`, Dec 2023; `PointLoss`,
Jan 2024): the process diffuses a 2-D point; the network sees a Gaussian heatmap rendered at the noisy point (in the
earlier branch, that heatmap noised once more) and predicts the clean heatmap.

`PointTarget` holds what the process needs to know about the points: their scale in diffusion space, how the noisy
point is brought back to [0, 1]^2 and rendered. Points are (x, y) normalised to [0, 1] (x = column); heatmaps are
[B, 1, size, size]. The diffusion methods that use it are `GaussianDiffusion.training_losses_point`,
`point_ddim_sample` and `point_ddim_sample_loop_progressive`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from diffusion.normalization import std_normalize


def render_point_heatmaps(points: torch.Tensor, size: int, sigma: int) -> torch.Tensor:
    """Heatmaps [B, 1, size, size] with a Gaussian of std `sigma` cells at each point [B, 2] ((x, y) in [0, 1]).

    As the original's `get_label_map_1`: the centre is the cell round(p * size) (round half to even), the Gaussian
    exp(-d^2 / (2 sigma^2)) is cut to the (6 sigma + 1)^2 window around it, and the map is divided by its maximum
    (so a centre just outside the grid still peaks at 1). A map whose window misses the grid is all zero.
    """
    if not (isinstance(sigma, int) and sigma >= 1):
        raise ValueError(f"point heatmap sigma: expected an int >= 1 (the original's window is 6 sigma + 1 cells), "
                         f"found {sigma!r}")
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points: expected shape [B, 2] ((x, y) in [0, 1]), found {tuple(points.shape)}")
    centre = torch.round(points.detach() * size)  # [B, 2], (column, row)
    cells = torch.arange(size, device=points.device, dtype=points.dtype)
    dx = cells[None, :] - centre[:, :1]  # [B, size] column offsets
    dy = cells[None, :] - centre[:, 1:]  # [B, size] row offsets
    window = 3 * sigma
    gx = torch.exp(-dx**2 / (2 * sigma**2)) * (dx.abs() <= window)
    gy = torch.exp(-dy**2 / (2 * sigma**2)) * (dy.abs() <= window)
    heatmaps = gy[:, :, None] * gx[:, None, :]  # [B, rows, columns]
    peak = heatmaps.amax(dim=(1, 2), keepdim=True)
    heatmaps = torch.where(peak > 0, heatmaps / peak.clamp(min=torch.finfo(heatmaps.dtype).tiny), heatmaps)
    return heatmaps[:, None]


def argmax_points(heatmaps: torch.Tensor) -> torch.Tensor:
    """The cell of each heatmap's maximum [B, 1, H, W] -> [B, 2] ((x, y) = (column / W, row / H); the first maximum
    in row-major order on ties, as the original's `batch_argmax`)."""
    batch, _, height, width = heatmaps.shape
    flat = heatmaps.reshape(batch, -1).argmax(dim=1)
    return torch.stack([(flat % width) / width, (flat // width) / height], dim=1).to(heatmaps.dtype)


@dataclass(frozen=True)
class PointTarget:
    """How the point formulation maps points in and out of the diffusion.

    scale v: a point p in [0, 1]^2 diffuses as 2 v p - v (the original's `diff_normalization`). std_normalize: the
    noisy point is divided by its std over its two coordinates (torch's unbiased std, i.e. |x - y| / sqrt(2), the
    original's `norm_std_flag`) before it is clamped to [-v, v] and mapped back to [0, 1]. heatmap_size, sigma:
    the rendered heatmap (the original: 64 and `random_sigma`). heatmap_noise_scale s > 0 (the original's branch
    `point_image_diffusion`: s = 0.1): the rendered heatmap h is then diffused too, as x = 2 s h - s noised to the
    same t (std-normalised with std_normalize) before the network sees it; 0 = the network sees h (branch PointLoss).
    """

    scale: float
    heatmap_size: int
    sigma: int
    std_normalize: bool = True
    heatmap_noise_scale: float = 0.0

    def __post_init__(self):
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"point scale (diff_normalization): expected a finite number > 0, found {self.scale!r}")

    def to_diffusion(self, points: torch.Tensor) -> torch.Tensor:
        return 2 * self.scale * points - self.scale

    def to_unit(self, x: torch.Tensor, std_normalize_point: bool) -> torch.Tensor:
        """A noisy diffusion-space point [B, 2] -> a point in [0, 1]^2 (std-normalised if asked, clamped)."""
        if std_normalize_point:
            x = std_normalize(x)
        return (x.clamp(-self.scale, self.scale) + self.scale) / (2 * self.scale)

    def render(self, points: torch.Tensor) -> torch.Tensor:
        return render_point_heatmaps(points, self.heatmap_size, self.sigma)
