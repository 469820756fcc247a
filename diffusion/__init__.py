"""Gaussian diffusion process (guided-diffusion compatible), respacing, heatmap scaling, the point formulation and
sampling helpers."""
from diffusion.factory import create_gaussian_diffusion
from diffusion.gaussian_diffusion import (
    GaussianDiffusion,
    LossType,
    ModelMeanType,
    ModelVarType,
    betas_for_alpha_bar,
    get_named_beta_schedule,
    mse_loss_weights,
    offset_noise_like,
    rescale_zero_terminal_snr,
)
from diffusion.normalization import HeatmapScaling, StdNormalizedInput
from diffusion.respace import SpacedDiffusion, space_timesteps
from diffusion.point import PointTarget, render_point_heatmaps
from diffusion.sampling import (
    SAMPLER_REGISTRY,
    SAMPLERS,
    default_sampler,
    register_sampler,
    resolve_sampler,
    sample_heatmaps,
    sample_point_heatmaps,
)

__all__ = [
    "GaussianDiffusion",
    "HeatmapScaling",
    "SAMPLERS",
    "SAMPLER_REGISTRY",
    "LossType",
    "ModelMeanType",
    "ModelVarType",
    "PointTarget",
    "SpacedDiffusion",
    "StdNormalizedInput",
    "betas_for_alpha_bar",
    "create_gaussian_diffusion",
    "default_sampler",
    "get_named_beta_schedule",
    "mse_loss_weights",
    "offset_noise_like",
    "register_sampler",
    "render_point_heatmaps",
    "rescale_zero_terminal_snr",
    "resolve_sampler",
    "sample_heatmaps",
    "sample_point_heatmaps",
    "space_timesteps",
]
