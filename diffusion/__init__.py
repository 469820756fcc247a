"""The Gaussian diffusion process (guided-diffusion compatible), respacing, heatmap scaling and the samplers. It
knows nothing of gaze: what is diffused and how the heatmap comes out is a formulation's (formulations/)."""
from diffusion.factory import create_gaussian_diffusion
from diffusion.gaussian_diffusion import (
    GaussianDiffusion,
    LossType,
    ModelMeanType,
    ModelVarType,
    betas_for_alpha_bar,
    extract_into_tensor,
    get_named_beta_schedule,
    mse_loss_weights,
    offset_noise_like,
    rescale_zero_terminal_snr,
)
from diffusion.normalization import HeatmapScaling, StdNormalizedInput
from diffusion.respace import SpacedDiffusion, space_timesteps
from diffusion.sampling import (
    SAMPLER_REGISTRY,
    default_sampler,
    register_sampler,
    resolve_sampler,
    sample_heatmaps,
    sampler_names,
)

__all__ = [
    "GaussianDiffusion",
    "HeatmapScaling",
    "SAMPLER_REGISTRY",
    "LossType",
    "ModelMeanType",
    "ModelVarType",
    "SpacedDiffusion",
    "StdNormalizedInput",
    "betas_for_alpha_bar",
    "create_gaussian_diffusion",
    "default_sampler",
    "extract_into_tensor",
    "get_named_beta_schedule",
    "mse_loss_weights",
    "offset_noise_like",
    "register_sampler",
    "rescale_zero_terminal_snr",
    "resolve_sampler",
    "sample_heatmaps",
    "sampler_names",
    "space_timesteps",
]
