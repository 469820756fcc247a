"""Sample from a conditioned network over a Gaussian process's grid: a small registry of samplers (DDPM, DDIM,
DPM-Solver++(2M); `@register_sampler` adds one), K samples per input averaged, and an SDEdit start from a partially
noised picture. What the state means (a heatmap, a noised rendered point) is the formulation's (formulations/)."""
from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from diffusion.gaussian_diffusion import GaussianDiffusion
from diffusion.respace import SpacedDiffusion

# name -> fn(diffusion, model_fn, shape, eta=0.0, **loop_kwargs) -> an iterator over that sampler's steps on the grid
# of `diffusion` (guided-diffusion's *_sample_loop_progressive: dicts with "sample" and "pred_xstart"). loop_kwargs:
# noise, clip_denoised, model_kwargs, device, progress, start_step, state_fn (see sample_loop_progressive).
SAMPLER_REGISTRY: dict[str, Callable] = {}


def register_sampler(name: str):
    """Decorator adding a sampler to SAMPLER_REGISTRY under `name`, the value of the `sampler` option that selects it
    (for every formulation that samples a state of the Gaussian process: heatmap, point_image). A plug-in module
    named in `backbone_plugins` may register one; it is imported before the configuration is checked."""

    def add(fn: Callable) -> Callable:
        if name in SAMPLER_REGISTRY:
            raise ValueError(f"sampler {name!r} is registered twice")
        SAMPLER_REGISTRY[name] = fn
        return fn

    return add


@register_sampler("ddpm")
def _ddpm(diffusion, model_fn, shape, eta=0.0, **loop_kwargs):
    if eta != 0.0:
        raise ValueError(f"eta: ancestral DDPM sampling has no eta, expected 0, found {eta!r}")
    return diffusion.p_sample_loop_progressive(model_fn, shape, **loop_kwargs)


@register_sampler("ddim")
def _ddim(diffusion, model_fn, shape, eta=0.0, **loop_kwargs):
    return diffusion.ddim_sample_loop_progressive(model_fn, shape, eta=eta, **loop_kwargs)


@register_sampler("dpm++2m")
def _dpm_solver_pp_2m(diffusion, model_fn, shape, eta=0.0, **loop_kwargs):
    if eta != 0.0:
        raise ValueError(f"eta: DPM-Solver++(2M) is deterministic, expected eta 0, found {eta!r}")
    return diffusion.dpm_solver_sample_loop_progressive(model_fn, shape, **loop_kwargs)


def sampler_names() -> tuple[str, ...]:
    """"auto" and every registered sampler (a plug-in's included once it is imported)."""
    return ("auto", *SAMPLER_REGISTRY)


def default_sampler(diffusion: GaussianDiffusion) -> str:
    """The original's rule: "ddim" when the diffusion is respaced to S < T steps, "ddpm" (ancestral) when S = T."""
    respaced = isinstance(diffusion, SpacedDiffusion) and diffusion.num_timesteps < diffusion.original_num_steps
    return "ddim" if respaced else "ddpm"


def resolve_sampler(diffusion: GaussianDiffusion, sampler: str) -> str:
    """The registered sampler that `sampler` names ("auto" follows `default_sampler`)."""
    if sampler != "auto" and sampler not in SAMPLER_REGISTRY:
        raise ValueError(f"sampler: expected one of {sampler_names()}, found {sampler!r}")
    return default_sampler(diffusion) if sampler == "auto" else sampler


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
    samples_per_input: int = 1,
    start_picture: torch.Tensor | None = None,
    start_step: int | None = None,
    state_fn=None,
) -> torch.Tensor:
    """Draw x_0 samples [B, C, H, W] in diffusion space (map them back with HeatmapScaling.to_heatmap).

    The caller computes the conditioning once per image and passes it in `conditioning_kwargs` (tensors with the
    batch first); every step then calls only `model_fn(x_t, t, **conditioning_kwargs)`.
    - `sampler`: "auto" follows `default_sampler`, or a name of SAMPLER_REGISTRY. `eta` is DDIM's noise scale.
    - `samples_per_input` K > 1 draws K samples per input in one batch of B * K (one network call per step, the
      conditioning repeated, not recomputed) and returns their mean, which is also the mean heatmap (the map back
      is affine). `noise`, if given, has the batch B * K.
    - `start_picture` [B, C, H, W] (diffusion space) with `start_step` s: SDEdit (Meng et al. 2022), the reverse
      process starts at grid index s from q_sample(start_picture, s) instead of pure noise at T - 1 (then `noise`
      is the eps of that q_sample).
    - `state_fn` replaces the state x_t by state_fn(x_t) before each step (compat_original_std_state).
    The device is noise's, else `device`, else that of model_fn's parameters when it is a Module.
    """
    final = None
    for final in sample_heatmaps_progressive(
        diffusion, model_fn, conditioning_kwargs, shape, sampler=sampler, eta=eta, clip_denoised=clip_denoised,
        noise=noise, device=device, progress=progress, samples_per_input=samples_per_input,
        start_picture=start_picture, start_step=start_step, state_fn=state_fn,
    ):
        pass
    return final["sample"]


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
    progress: bool = False,
    samples_per_input: int = 1,
    start_picture: torch.Tensor | None = None,
    start_step: int | None = None,
    state_fn=None,
) -> Iterator[dict]:
    """`sample_heatmaps` one step at a time: yields {"step", "sample", "pred_xstart"} [B, C, H, W] (diffusion space,
    the mean over the K samples per input) and "samples" [B, K, C, H, W] (the K states themselves) for every step,
    `step` being the index on this process's grid from the start (T' - 1, or `start_step`) down to 0. The last
    "sample" is `sample_heatmaps`' result. Checks run at the call."""
    if not (isinstance(samples_per_input, int) and samples_per_input >= 1):
        raise ValueError(f"samples_per_input: expected an int >= 1, found {samples_per_input!r}")
    if (start_picture is None) != (start_step is None):
        raise ValueError("start_picture and start_step: pass both (SDEdit start) or neither")
    chosen = resolve_sampler(diffusion, sampler)
    k = samples_per_input
    shape = tuple(shape)
    batch_shape = (shape[0] * k, *shape[1:])
    if k > 1:
        conditioning_kwargs = {name: value.repeat_interleave(k, dim=0) for name, value in conditioning_kwargs.items()}
    if start_picture is not None:
        if tuple(start_picture.shape) != shape:
            raise ValueError(f"start_picture: expected shape {shape}, found {tuple(start_picture.shape)}")
        picture = start_picture.repeat_interleave(k, dim=0)
        t = torch.full((batch_shape[0],), start_step, dtype=torch.long, device=picture.device)
        noise = diffusion.q_sample(picture, t, noise=noise)
    steps = SAMPLER_REGISTRY[chosen](
        diffusion, model_fn, batch_shape, eta=eta, noise=noise, clip_denoised=clip_denoised,
        model_kwargs=conditioning_kwargs, device=device, progress=progress, start_step=start_step, state_fn=state_fn,
    )
    first = diffusion.num_timesteps - 1 if start_step is None else start_step
    return _per_input_means(steps, first, shape[0], k)


def _per_input_means(steps, first: int, batch: int, k: int) -> Iterator[dict]:
    for step, out in zip(range(first, -1, -1), steps):
        sample, pred_xstart = out["sample"], out["pred_xstart"]
        samples = sample.reshape(batch, k, *sample.shape[1:])
        if k > 1:
            sample = samples.mean(dim=1)
            pred_xstart = pred_xstart.reshape(batch, k, *pred_xstart.shape[1:]).mean(dim=1)
        yield {"step": step, "sample": sample, "pred_xstart": pred_xstart, "samples": samples}
