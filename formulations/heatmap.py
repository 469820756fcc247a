"""diffusion_target: heatmap (branch main of the original): the target heatmap h in [0, 1] is diffused as
x0 = 2 v h - v (v = diff_normalization); the UNet denoises it, conditioned on the backbone's tokens, and any sampler
of the registry draws x0, mapped back by (x + v) / (2 v)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext

import torch

from diffusion import SAMPLER_REGISTRY, HeatmapScaling, StdNormalizedInput, resolve_sampler
from diffusion.normalization import std_normalize
from diffusion.sampling import sample_heatmaps_progressive
from formulations.base import TrainingTargets, last, register_formulation
from formulations.gaussian import DiffusionFormulation, rows_of, sdedit_start_step


@register_formulation("heatmap")
class HeatmapFormulation(DiffusionFormulation):
    """The heatmap is the diffusion's state; with norm_std_flag the UNet sees x_t divided by its per-sample std."""

    def __init__(self, config):
        super().__init__(config)
        self.scaling = HeatmapScaling(config.diff_normalization)
        self.sampler = resolve_sampler(self.sampling_diffusion, config.sampler)

    @classmethod
    def samplers(cls) -> tuple[str, ...]:
        return tuple(SAMPLER_REGISTRY)

    def network(self, model):
        """What the process calls as `fn(x_t, t, context=..., [spatial=...])`: the UNet, with x_t divided by its
        per-sample standard deviation first when `norm_std_flag` is on."""
        if self.config.norm_std_flag:
            return StdNormalizedInput(model.heatmap_network)
        return model.heatmap_network

    def state_fn(self):
        """compat_original_std_state: the original divided the sampling state itself by its std at every step."""
        return std_normalize if self.config.compat_original_std_state else None

    def to_diffusion(self, heatmap: torch.Tensor) -> torch.Tensor:
        """A [0, 1] heatmap as the diffusion's x0 (2 v h - v)."""
        return self.scaling.to_diffusion(heatmap)

    def to_heatmap(self, x: torch.Tensor) -> torch.Tensor:
        """The sampled state in heatmap units ((x + v) / (2 v))."""
        return self.scaling.to_heatmap(x)

    def unit_heatmap(self, pred_xstart: torch.Tensor) -> torch.Tensor:
        return self.to_heatmap(pred_xstart)

    def training_losses(self, model, features: dict, targets: TrainingTargets) -> dict[str, torch.Tensor]:
        kwargs = rows_of(self.conditioning(model, features), targets.rows)
        x_start = self.to_diffusion(targets.heatmap[targets.rows].unsqueeze(1))
        diffusion = self.training_diffusion
        t, noise = targets.draw(diffusion.num_timesteps, tuple(x_start.shape[1:]), diffusion.offset_noise_strength)
        terms = diffusion.training_losses(self.network(model), x_start, t.to(x_start.device, non_blocking=True),
                                          model_kwargs=kwargs, noise=noise.to(x_start.device, non_blocking=True))
        return {"loss": terms["loss"], "pred_xstart": terms["pred_xstart"], "x_start": x_start,
                **({"model_output": terms["model_output"]} if "model_output" in terms else {})}

    def _steps(self, network, conditioning: dict, batch_size: int, device, samples_per_input: int,
               start_heatmap: torch.Tensor | None = None) -> Iterator[dict]:
        config = self.config
        shape = (batch_size, config.unet_inout_channels, config.output_size, config.output_size)
        start = {}
        if start_heatmap is not None:
            start = {"start_picture": self.to_diffusion(start_heatmap.expand(shape).to(device)),
                     "start_step": sdedit_start_step(self.sampling_diffusion, config.time_noise)}
        return sample_heatmaps_progressive(self.sampling_diffusion, network, conditioning, shape,
                                           sampler=config.sampler, eta=config.ddim_eta,
                                           samples_per_input=samples_per_input, clip_denoised=config.clip_denoised,
                                           device=device, state_fn=self.state_fn(), **start)

    def sample(self, network, conditioning: dict, batch_size: int, device: torch.device, autocast=nullcontext,
               start_heatmap: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """K = sample_k draws per input in one batch; with `start_heatmap` (eval_from_picture: [0, 1] heatmaps that
        broadcast to [B, C, H, W]) the reverse process starts from it noised to the last grid step <= time_noise."""
        with autocast():
            final = last(self._steps(network, conditioning, batch_size, device, self.config.sample_k, start_heatmap))
        return {"heatmaps": self.to_heatmap(final["sample"].float())[:, 0],
                "samples": self.to_heatmap(final["samples"].float())[:, :, 0]}

    def progressive(self, network, conditioning: dict, device: torch.device) -> Iterator[dict]:
        for out in self._steps(network, conditioning, 1, device, self.config.sample_k):
            yield {"step": out["step"], "pred_xstart": self.to_heatmap(out["pred_xstart"].float())}

    def summary(self) -> dict:
        config = self.config
        summary = {"sampler": self.sampler, "sample_steps": config.sample_time_steps, "ddim_eta": config.ddim_eta,
                   "sample_k": config.sample_k, "diffusion_target": config.diffusion_target,
                   "formulation": self.name, "heatmap_decoder": config.heatmap_decoder,
                   "sampling": f"{self.sampler} over {self.sampling_steps} grid steps of the heatmap state, the mean "
                               f"of K = {config.sample_k} samples per input"}
        for name in ("compat_original_ddim_step", "compat_original_std_state"):
            if getattr(config, name):
                summary[name] = True
        if config.eval_from_picture:
            diffusion = self.sampling_diffusion
            step = sdedit_start_step(diffusion, config.time_noise)
            summary["start_picture"] = {
                "source": config.picture_source, "time_noise": config.time_noise,
                "start_timestep": int(getattr(diffusion, "timestep_map", range(diffusion.num_timesteps))[step]),
                "diagnostic_only": config.picture_source == "ground_truth"}
        return summary
