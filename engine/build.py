"""What the engine builds from the configuration besides the model: the formulation (formulations/), which owns the
diffusion processes, the heatmap scaling, the network it calls and its sampler. The names below are the formulation
room's, gathered for the engine, the evaluation and the benchmarks."""
from __future__ import annotations

from diffusion.normalization import HeatmapScaling
from formulations import build_formulation
from formulations.gaussian import (  # noqa: F401  (re-exported)
    build_sampling_diffusion, build_training_diffusion, diffusion_kwargs, sdedit_start_step,
)

__all__ = ["build_formulation", "build_sampling_diffusion", "build_training_diffusion", "denoiser",
           "diffusion_kwargs", "heatmap_scaling", "sampling_state_fn", "sdedit_start_step"]


def heatmap_scaling(config) -> HeatmapScaling:
    return HeatmapScaling(config.diff_normalization)


def denoiser(model, config):
    """What the configured formulation calls (for a diffusion decoder `fn(x_t, t, context=..., [spatial=...])`: the
    UNet, its input std-normalised for the heatmap target with norm_std_flag)."""
    return build_formulation(config).network(model)


def sampling_state_fn(config):
    """What the configured diffusion formulation applies to the sampling state before each step (None: nothing)."""
    formulation = build_formulation(config)
    return formulation.state_fn() if hasattr(formulation, "state_fn") else None
