"""Gaussian diffusion process (guided-diffusion compatible), respacing, heatmap scaling and sampling helpers."""
from diffusion.factory import create_gaussian_diffusion
from diffusion.gaussian_diffusion import (
    GaussianDiffusion,
    LossType,
    ModelMeanType,
    ModelVarType,
    betas_for_alpha_bar,
    get_named_beta_schedule,
)
from diffusion.normalization import HeatmapScaling, StdNormalizedInput
from diffusion.respace import SpacedDiffusion, space_timesteps
from diffusion.sampling import default_sampler, sample_heatmaps

__all__ = [
    "GaussianDiffusion",
    "HeatmapScaling",
    "LossType",
    "ModelMeanType",
    "ModelVarType",
    "SpacedDiffusion",
    "StdNormalizedInput",
    "betas_for_alpha_bar",
    "create_gaussian_diffusion",
    "default_sampler",
    "get_named_beta_schedule",
    "sample_heatmaps",
    "space_timesteps",
]
