"""Build a diffusion from flat options, as guided-diffusion's `script_util.create_gaussian_diffusion` does."""
from __future__ import annotations

from diffusion.gaussian_diffusion import (
    LossType,
    ModelMeanType,
    ModelVarType,
    get_named_beta_schedule,
    rescale_zero_terminal_snr,
)
from diffusion.respace import SpacedDiffusion, space_timesteps


def create_gaussian_diffusion(
    *,
    steps: int = 1000,
    learn_sigma: bool = False,
    sigma_small: bool = False,
    noise_schedule: str = "linear",
    use_kl: bool = False,
    predict_xstart: bool = False,
    predict_v: bool = False,
    rescale_timesteps: bool = False,
    rescale_learned_sigmas: bool = False,
    timestep_respacing="",
    factor_multiplier: float = 1.0,
    clip_range: float = 1.0,
    zero_terminal_snr: bool = False,
    mse_loss_weight_type: str = "constant",
    offset_noise_strength: float = 0.0,
    compat_original_ddim_step: bool = False,
    use_timesteps=None,
) -> SpacedDiffusion:
    """A SpacedDiffusion over a `steps`-step schedule, kept at every step when `timestep_respacing` is empty.

    Mean: eps, or x_0 with predict_xstart, or v with predict_v (our addition). Variance: learned range with
    learn_sigma, else fixed small (sigma_small) or fixed large. Loss: RESCALED_KL with use_kl, else RESCALED_MSE
    with rescale_learned_sigmas, else MSE. `timestep_respacing` takes space_timesteps' forms ("ddim50", "10,15,20").
    Our additions: `zero_terminal_snr` rescales the schedule (after factor_multiplier) to abar_{T-1} = 0, which
    needs x_0 or v prediction and a grid that keeps t = T - 1 (sampling starts from pure noise there);
    `mse_loss_weight_type`, `offset_noise_strength` and `compat_original_ddim_step` are passed to the diffusion;
    `use_timesteps` (a set of steps to keep) replaces `timestep_respacing` when given.
    """
    if predict_xstart and predict_v:
        raise ValueError("predict_xstart and predict_v: expected at most one of them true, found both")
    if use_kl:
        loss_type = LossType.RESCALED_KL
    elif rescale_learned_sigmas:
        loss_type = LossType.RESCALED_MSE
    else:
        loss_type = LossType.MSE
    if predict_xstart:
        mean_type = ModelMeanType.START_X
    elif predict_v:
        mean_type = ModelMeanType.VELOCITY
    else:
        mean_type = ModelMeanType.EPSILON
    if learn_sigma:
        var_type = ModelVarType.LEARNED_RANGE
    else:
        var_type = ModelVarType.FIXED_SMALL if sigma_small else ModelVarType.FIXED_LARGE
    betas = get_named_beta_schedule(noise_schedule, steps, factor_multiplier)
    if use_timesteps is None:
        use_timesteps = space_timesteps(steps, timestep_respacing or [steps])
    elif timestep_respacing:
        raise ValueError("use_timesteps and timestep_respacing: pass at most one of them")
    if zero_terminal_snr:
        betas = rescale_zero_terminal_snr(betas)
        if mean_type is ModelMeanType.EPSILON:
            raise ValueError("zero_terminal_snr: eps prediction cannot recover x_0 at the last step, where abar = 0; "
                             "predict x_0 (predict_xstart) or v (predict_v)")
        if steps - 1 not in use_timesteps:
            raise ValueError(
                f"zero_terminal_snr: the sampling grid {timestep_respacing!r} leaves out t = {steps - 1}, the only "
                f"step whose x_t is pure noise; use an evenly spaced grid such as '{max(len(use_timesteps), 2)}'"
            )
    return SpacedDiffusion(
        use_timesteps=use_timesteps,
        compat_original_ddim_step=compat_original_ddim_step,
        mse_loss_weight_type=mse_loss_weight_type,
        offset_noise_strength=offset_noise_strength,
        betas=betas,
        model_mean_type=mean_type,
        model_var_type=var_type,
        loss_type=loss_type,
        rescale_timesteps=rescale_timesteps,
        clip_range=clip_range,
    )
