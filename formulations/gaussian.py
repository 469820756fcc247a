"""The Gaussian processes the diffusion formulations train and sample with, built from the options. The diffusion
package itself (guided-diffusion's process) knows nothing of these options."""
from __future__ import annotations

from functools import cached_property

from diffusion import create_gaussian_diffusion
from formulations.base import Formulation


def diffusion_kwargs(config) -> dict:
    """`create_gaussian_diffusion` arguments for the configured process.

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


class DiffusionFormulation(Formulation):
    """The part every formulation over the Gaussian process shares: its T-step training process and its S-step
    sampling process, both built from the options, and `diffusion_weight` on its loss."""

    loss_name = "loss_diffusion"

    def __init__(self, config):
        self.config = config
        self.sampling_diffusion = build_sampling_diffusion(config)
        self.loss_weight = config.diffusion_weight

    @property
    def original_output_scale(self) -> float:
        return self.config.diff_normalization

    @cached_property
    def training_diffusion(self):
        return build_training_diffusion(self.config)

    @classmethod
    def from_config(cls, config) -> "DiffusionFormulation":
        return cls(config)

    @classmethod
    def check_config(cls, config, at, changed=()) -> None:
        super().check_config(config, at, changed)
        unread = [name for name in ("direct_loss", "direct_loss_weight") if name in changed]
        if unread:
            verb = "configures" if len(unread) == 1 else "configure"
            raise ValueError(f"{', '.join(at(name) for name in unread)} {verb} a direct heatmap decoder, but "
                             f"{at('heatmap_decoder')} = {config.heatmap_decoder!r} is a diffusion decoder "
                             "(its loss is the diffusion loss, weighted by diffusion_weight)")

    @property
    def sampling_steps(self) -> int:
        return self.sampling_diffusion.num_timesteps


def rows_of(kwargs: dict, rows) -> dict:
    """The in-frame rows of every conditioning tensor."""
    return {name: value[rows] for name, value in kwargs.items()}
