"""Respacing (guided-diffusion): a diffusion on a subset of a base process's timesteps, for sampling in fewer steps."""
from __future__ import annotations

import numpy as np
import torch

from diffusion.gaussian_diffusion import GaussianDiffusion


def space_timesteps(num_timesteps: int, section_counts) -> set[int]:
    """The timesteps of a `num_timesteps`-step process to keep.

    `section_counts` is a list of step counts, or a string of them: "10,15,20" splits the process into three
    equal sections (the first ones one step longer when T does not divide) and takes 10, 15 and 20 evenly strided
    steps from them, each section's first and last step included; "50" is one section. "ddimN" instead takes
    range(0, T, stride) with the integer stride that gives exactly N steps (the DDIM paper's striding).
    """
    if isinstance(section_counts, str):
        if section_counts.startswith("ddim"):
            desired_count = _parse_count(section_counts[len("ddim"):], section_counts)
            for stride in range(1, num_timesteps):
                if len(range(0, num_timesteps, stride)) == desired_count:
                    return set(range(0, num_timesteps, stride))
            raise ValueError(
                f"timestep respacing {section_counts!r}: no integer stride gives exactly {desired_count} of "
                f"{num_timesteps} steps"
            )
        section_counts = [_parse_count(part, section_counts) for part in section_counts.split(",")]
    if not section_counts or any(not isinstance(count, int) or count < 1 for count in section_counts):
        raise ValueError(f"timestep respacing: expected positive step counts, found {section_counts!r}")

    size_per_section, extra = divmod(num_timesteps, len(section_counts))
    start = 0
    steps = []
    for i, count in enumerate(section_counts):
        size = size_per_section + (1 if i < extra else 0)
        if size < count:
            raise ValueError(f"timestep respacing: cannot take {count} steps from a section of {size} steps")
        stride = 1 if count == 1 else (size - 1) / (count - 1)
        # A running float index, rounded per step, reproduces guided-diffusion's grids exactly.
        position = 0.0
        for _ in range(count):
            steps.append(start + round(position))
            position += stride
        start += size
    return set(steps)


def _parse_count(text: str, section_counts: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(
            f"timestep respacing: expected 'ddimN' or comma-separated step counts such as '10,15,20', "
            f"found {section_counts!r}"
        ) from None


class SpacedDiffusion(GaussianDiffusion):
    """The base diffusion (built from `kwargs`) restricted to `use_timesteps`.

    Betas are re-derived so that abar at the i-th kept step equals the base abar there:
    beta_i = 1 - abar(s_i) / abar(s_{i-1}). Each step therefore jumps to the previous kept step, so DDIM and the
    posteriors use abar of the next grid point, not of t - 1. The network still sees the base process's
    timestep s_i (t * 1000 / T_base with rescale_timesteps), not the index i into the kept grid.

    `compat_original_ddim_step` reproduces a defect of the original DiffusionGaze code, for comparing with its
    numbers only: its DDIM step from base timestep s_i landed on abar(s_i - 1) of the base process instead of
    abar(s_{i-1}) of the next grid point, so on a coarse grid each step removes almost no noise. The grid itself
    stays this class's.
    """

    def __init__(self, use_timesteps, compat_original_ddim_step: bool = False, **kwargs):
        base = GaussianDiffusion(**kwargs)
        self.use_timesteps = set(use_timesteps)
        outside = sorted(step for step in self.use_timesteps if not 0 <= step < base.num_timesteps)
        if outside:
            raise ValueError(
                f"use_timesteps: expected steps in [0, {base.num_timesteps}), found {outside}"
            )
        self.timestep_map = sorted(self.use_timesteps)
        self.original_num_steps = base.num_timesteps
        kept_alphas_cumprod = base.alphas_cumprod[self.timestep_map]
        betas = 1.0 - kept_alphas_cumprod / np.append(1.0, kept_alphas_cumprod[:-1])
        super().__init__(**{**kwargs, "betas": betas})
        self.compat_original_ddim_step = compat_original_ddim_step
        if compat_original_ddim_step:
            base_prev = np.array(self.timestep_map) - 1
            self.ddim_alphas_cumprod_prev = np.where(base_prev >= 0, base.alphas_cumprod[np.maximum(base_prev, 0)], 1.0)

    def _scale_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        base_t = torch.tensor(self.timestep_map, dtype=t.dtype, device=t.device)[t]
        if self.rescale_timesteps:
            return base_t.float() * (1000.0 / self.original_num_steps)
        return base_t
