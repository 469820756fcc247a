"""Heatmap <-> diffusion-space scaling and the per-sample std normalisation of the network input (norm_std_flag)."""
from __future__ import annotations

import math

import torch


class HeatmapScaling:
    """Maps a heatmap h in [0, 1] to the diffusion's data range [-v, v] and back.

    x_0 = 2 v h - v scales the signal, not the noise, so every SNR of the schedule grows by v^2
    (the original's `diff_normalization`; its final configuration used v = 3).
    """

    def __init__(self, v: float):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"diff_normalization v: expected a finite number > 0, found {v!r}")
        self.v = float(v)

    def to_diffusion(self, heatmap: torch.Tensor) -> torch.Tensor:
        return 2 * self.v * heatmap - self.v

    def to_heatmap(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.v) / (2 * self.v)


def std_normalize(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x divided by its per-sample standard deviation over all non-batch dimensions (torch's unbiased std, as in the
    original); `eps` only guards a sample that is constant."""
    std = x.std(dim=tuple(range(1, x.ndim)), keepdim=True)
    return x / std.clamp(min=eps)


class StdNormalizedInput:
    """Calls `model(x_t / std(x_t), t, **kwargs)`, std taken per sample over all non-batch dimensions.

    Only the network's input is rescaled (Chen 2023, "On the importance of noise scheduling"); the sampling state,
    the loss targets and the output are untouched. The std is torch's default unbiased one, as in the original;
    `eps` only guards an input that is constant within a sample. A plain callable rather than a Module, so that
    wrapping leaves the model's parameters and state-dict keys as they are.
    """

    def __init__(self, model, eps: float = 1e-6):
        if not eps > 0:
            raise ValueError(f"eps: expected a number > 0, found {eps!r}")
        self.model = model
        self.eps = eps

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, **model_kwargs):
        return self.model(std_normalize(x_t, self.eps), t, **model_kwargs)
