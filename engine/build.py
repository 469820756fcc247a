"""Glue between the configuration and the gaze-agnostic parts: the diffusion processes, the UNet the process calls,
and the heatmap scaling. The diffusion package itself knows nothing of these options."""
from __future__ import annotations

import torch

from diffusion import create_gaussian_diffusion
from diffusion.normalization import HeatmapScaling, StdNormalizedInput, std_normalize
from diffusion.point import PointTarget

# The point_image formulation's heatmap scale (the original's hard-coded `second_norm`).
POINT_IMAGE_HEATMAP_SCALE = 0.1


def diffusion_kwargs(config) -> dict:
    """`create_gaussian_diffusion` arguments for the configured formulation.

    ADM (`adm: true`): the adm_* options. Simple (`adm: false`): `predict_sthg` picks eps or x0, fixed (large)
    variance, MSE. Both: the schedule (fix_snr), the MSE weighting and offset noise (noise_changer).
    """
    common = dict(steps=config.train_time_steps, noise_schedule=config.schedule_type,
                  factor_multiplier=config.factor_multiplier, clip_range=config.diff_normalization,
                  zero_terminal_snr=config.fix_snr, mse_loss_weight_type=config.mse_loss_weight_type,
                  offset_noise_strength=config.offset_noise_strength if config.noise_changer else 0.0)
    if config.adm:
        return dict(common, learn_sigma=config.adm_learn_sigma, use_kl=config.adm_use_kl,
                    predict_xstart=config.adm_predict_xstart, predict_v=config.adm_predict_v,
                    rescale_timesteps=config.adm_rescale_timesteps,
                    rescale_learned_sigmas=config.adm_rescale_learned_sigmas, sigma_small=config.adm_sigma_small)
    return dict(common, predict_xstart=config.predict_sthg == "pred_x0")


def build_training_diffusion(config):
    """The T-step process used for the training losses."""
    return create_gaussian_diffusion(**diffusion_kwargs(config), timestep_respacing="")


def build_sampling_diffusion(config):
    """The process used for sampling: guided-diffusion's evenly spaced grid of S = sample_time_steps steps (respacing
    string "S", which includes t = 0 and t = T-1; all T steps when S = T). S = 1 keeps t = T-1 alone (one step from
    pure noise straight to x0), where guided-diffusion's "1" would keep t = 0. Which sampler runs over the grid is
    `config.sampler` (see diffusion.sampling.resolve_sampler)."""
    steps = config.sample_time_steps
    grid = dict(use_timesteps={config.train_time_steps - 1}) if steps == 1 else \
        dict(timestep_respacing="" if steps == config.train_time_steps else str(steps))
    return create_gaussian_diffusion(**diffusion_kwargs(config), **grid,
                                     compat_original_ddim_step=config.compat_original_ddim_step)


def sdedit_start_step(diffusion, time_noise: int) -> int:
    """The grid index at which eval_from_picture starts: the last grid point whose training timestep is <= t0."""
    timestep_map = getattr(diffusion, "timestep_map", range(diffusion.num_timesteps))
    below = [index for index, timestep in enumerate(timestep_map) if timestep <= time_noise]
    if not below:
        raise ValueError(f"time_noise {time_noise}: no sampling grid point lies at or below it")
    return below[-1]


def sampling_state_fn(config):
    """compat_original_std_state: the original divided the sampling state itself by its std at every step; the
    point_image formulation does so by definition (its network was trained on std-normalised heatmaps)."""
    point_image = config.diffusion_target == "point_image" and config.norm_std_flag
    return std_normalize if config.compat_original_std_state or point_image else None


def heatmap_scaling(config) -> HeatmapScaling:
    return HeatmapScaling(config.diff_normalization)


def denoiser(model: torch.nn.Module, config) -> torch.nn.Module:
    """What the diffusion process calls as `fn(x_t, t, context=conditioning)`: the UNet, with x_t divided by its
    per-sample standard deviation first when `norm_std_flag` is on (heatmap target; with the point target
    norm_std_flag acts on the noisy point, and the UNet sees the rendered heatmap as it is)."""
    if config.norm_std_flag and config.diffusion_target == "heatmap":
        return StdNormalizedInput(model.unet)
    return model.unet  # point_image: the sampling state itself is std-normalised (sampling_state_fn)


def point_target(config) -> PointTarget:
    """The point formulation's settings (diffusion_target: point): points scaled by diff_normalization, rendered at
    the heatmap size with sigma random_sigma (an integer, as the original's renderer needs)."""
    if config.diffusion_target not in ("point", "point_image"):
        raise ValueError(f"point_target: diffusion_target is {config.diffusion_target!r}, not a point formulation")
    sigma = config.random_sigma
    if float(sigma) != int(sigma) or sigma < 1:
        raise ValueError(f"random_sigma {sigma}: diffusion_target: point renders the noisy point with an integer "
                         "sigma >= 1 (the original's window is 6 sigma + 1 cells)")
    if config.unet_inout_channels != 1:
        raise ValueError(f"diffusion_target: point renders one heatmap channel; unet_inout_channels is "
                         f"{config.unet_inout_channels}")
    return PointTarget(scale=config.diff_normalization, heatmap_size=config.output_size, sigma=int(sigma),
                       std_normalize=config.norm_std_flag,
                       heatmap_noise_scale=POINT_IMAGE_HEATMAP_SCALE if config.diffusion_target == "point_image" else 0.0)
