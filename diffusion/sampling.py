"""Sample from a conditioned network with the original's choice of sampler: DDIM on a respaced grid, else DDPM."""
from __future__ import annotations

import torch

from diffusion.gaussian_diffusion import GaussianDiffusion
from diffusion.respace import SpacedDiffusion

SAMPLERS = ("auto", "ddim", "ddpm")


def default_sampler(diffusion: GaussianDiffusion) -> str:
    """The original's rule: "ddim" when the diffusion is respaced to S < T steps, "ddpm" (ancestral) when S = T."""
    respaced = isinstance(diffusion, SpacedDiffusion) and diffusion.num_timesteps < diffusion.original_num_steps
    return "ddim" if respaced else "ddpm"


def sample_heatmaps(
    diffusion: GaussianDiffusion,
    model_fn,
    conditioning_kwargs: dict,
    shape,
    *,
    sampler: str = "auto",
    eta: float = 0.0,
    clip_denoised: bool,
    noise: torch.Tensor | None = None,
    device=None,
    progress: bool = False,
) -> torch.Tensor:
    """Draw x_0 samples in diffusion space (map them back with HeatmapScaling.to_heatmap).

    The caller computes the conditioning once per image and passes it in `conditioning_kwargs`; every step then
    calls only `model_fn(x_t, t, **conditioning_kwargs)`. `sampler` "auto" follows `default_sampler`; "ddim" and
    "ddpm" force one. `eta` is DDIM's noise scale (0 = deterministic); DDPM has none, so eta must be 0 there.
    The device is noise's, else `device`, else that of model_fn's parameters when it is a Module.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler: expected one of {SAMPLERS}, found {sampler!r}")
    chosen = default_sampler(diffusion) if sampler == "auto" else sampler
    loop_kwargs = dict(noise=noise, clip_denoised=clip_denoised, model_kwargs=conditioning_kwargs, device=device,
                       progress=progress)
    if chosen == "ddim":
        return diffusion.ddim_sample_loop(model_fn, shape, eta=eta, **loop_kwargs)
    if eta != 0.0:
        raise ValueError(f"eta: ancestral DDPM sampling has no eta, expected 0, found {eta!r}")
    return diffusion.p_sample_loop(model_fn, shape, **loop_kwargs)


def sample_heatmaps_progressive(
    diffusion: GaussianDiffusion,
    model_fn,
    conditioning_kwargs: dict,
    shape,
    *,
    sampler: str = "auto",
    eta: float = 0.0,
    clip_denoised: bool,
    noise: torch.Tensor | None = None,
    device=None,
):
    """Like `sample_heatmaps`, but a generator of every step's {"step", "sample", "pred_xstart"} (diffusion space; step
    is the index on this process's grid, num_timesteps - 1 down to 0): the
    denoising trajectory, e.g. the predicted x0 after each step. The same loop runs, so with the same noise the last
    "sample" equals `sample_heatmaps`' result (the tests check it)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler: expected one of {SAMPLERS}, found {sampler!r}")
    chosen = default_sampler(diffusion) if sampler == "auto" else sampler
    loop_kwargs = dict(noise=noise, clip_denoised=clip_denoised, model_kwargs=conditioning_kwargs, device=device)
    if chosen == "ddim":
        steps = diffusion.ddim_sample_loop_progressive(model_fn, shape, eta=eta, **loop_kwargs)
    elif eta != 0.0:
        raise ValueError(f"eta: ancestral DDPM sampling has no eta, expected 0, found {eta!r}")
    else:
        steps = diffusion.p_sample_loop_progressive(model_fn, shape, **loop_kwargs)
    for step, out in zip(range(diffusion.num_timesteps - 1, -1, -1), steps):
        yield {"step": step, "sample": out["sample"], "pred_xstart": out["pred_xstart"]}
