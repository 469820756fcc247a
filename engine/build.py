"""Glue between the configuration and the gaze-agnostic parts: the diffusion processes, the UNet the process calls,
and the heatmap scaling. The diffusion package itself knows nothing of these options."""
from __future__ import annotations

import torch

from diffusion import create_gaussian_diffusion
from diffusion.normalization import HeatmapScaling, StdNormalizedInput


def diffusion_kwargs(config) -> dict:
    """`create_gaussian_diffusion` arguments for the configured formulation.

    ADM (`adm: true`): the adm_* options. Simple (`adm: false`): `predict_sthg` picks eps or x0, fixed variance, MSE.
    """
    common = dict(steps=config.train_time_steps, noise_schedule=config.schedule_type,
                  factor_multiplier=config.factor_multiplier, clip_range=config.diff_normalization)
    if config.adm:
        return dict(common, learn_sigma=config.adm_learn_sigma, use_kl=config.adm_use_kl,
                    predict_xstart=config.adm_predict_xstart, predict_v=config.adm_predict_v,
                    rescale_timesteps=config.adm_rescale_timesteps,
                    rescale_learned_sigmas=config.adm_rescale_learned_sigmas)
    return dict(common, predict_xstart=config.predict_sthg == "pred_x0")


def build_training_diffusion(config):
    """The T-step process used for the training losses."""
    return create_gaussian_diffusion(**diffusion_kwargs(config), timestep_respacing="")


def build_sampling_diffusion(config):
    """The process used for sampling: S = T runs ancestral DDPM on the full grid; S < T runs DDIM (eta 0) on
    guided-diffusion's evenly spaced grid of S steps (respacing string "S", which includes t = 0 and t = T-1)."""
    steps = config.sample_time_steps
    respacing = "" if steps == config.train_time_steps else str(steps)
    return create_gaussian_diffusion(**diffusion_kwargs(config), timestep_respacing=respacing)


def heatmap_scaling(config) -> HeatmapScaling:
    return HeatmapScaling(config.diff_normalization)


def denoiser(model: torch.nn.Module, config) -> torch.nn.Module:
    """What the diffusion process calls as `fn(x_t, t, context=conditioning)`: the UNet, with x_t divided by its
    per-sample standard deviation first when `norm_std_flag` is on."""
    return StdNormalizedInput(model.unet) if config.norm_std_flag else model.unet
