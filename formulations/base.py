"""The formulation interface and its registry: what a formulation is asked to do, and how one is chosen by name.

A formulation says what is diffused (or decoded) and how the heatmap comes out: it owns its training losses, its
sampling (its sampler(s), its time grid, its count of network calls) and its configuration checks. The training step,
the evaluation, prediction and the ONNX runner call these methods and never ask which formulation they hold.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

# name -> formulation class; `diffusion_target` (for a diffusion decoder) or the decoder kind selects one.
FORMULATIONS: dict[str, type["Formulation"]] = {}


def register_formulation(name: str):
    """Class decorator adding a formulation to FORMULATIONS under `name` (a `diffusion_target` value when the
    class diffuses something)."""

    def add(cls: type[Formulation]) -> type[Formulation]:
        if name in FORMULATIONS:
            raise ValueError(f"formulation {name!r} is registered twice ({FORMULATIONS[name].__module__}."
                             f"{FORMULATIONS[name].__name__}, {cls.__module__}.{cls.__name__})")
        cls.name = name
        FORMULATIONS[name] = cls
        return cls

    return add


@dataclass(frozen=True)
class TrainingTargets:
    """What a training step hands a formulation for a batch of B samples, n of them in frame.

    heatmap: [B, H, W] target heatmaps in [0, 1]; gaze_point: [B, 2] the first annotator's point, normalised (x, y)
    (x = column); rows: [n] indices of the in-frame samples (on the device), the only ones with a target;
    draw(num_timesteps, sample_shape, offset_noise_strength=0.0) -> (t [n] int64, noise [n, *sample_shape]) on the
    CPU: the per-sample draws of the in-frame samples, a pure function of (seed, step, dataset index) (engine.data.
    diffusion_draws), so that a resumed or distributed run draws exactly what an uninterrupted one does.
    """

    heatmap: torch.Tensor
    gaze_point: torch.Tensor
    rows: torch.Tensor
    draw: Callable[..., tuple[torch.Tensor, torch.Tensor]]


class Formulation:
    """One way of getting a heatmap from the backbone's features. Subclasses register with @register_formulation.

    Built once from the configuration (`from_config`); `check_config` runs when the configuration is read (from
    engine.config.validate, before any data is read or model built) and raises ValueError naming the options.

    - `network(model)`: what the formulation calls (the denoiser `fn(x_t, t, **conditioning)` of a diffusion, or a
      direct decoder `fn(features)`); `conditioning(model, features)`: the keyword arguments it passes.
    - `training_losses(model, features, targets)` -> {"loss": [n] per in-frame sample, "pred_xstart": [n, 1, H, W]
      the predicted clean map with its gradient (for the extra losses), "x_start": [n, 1, H, W] its target, in the
      same units}. The total's composition (weights, extra losses, in/out) is the training step's, not this.
    - `sample(network, conditioning, batch_size, device, autocast, start_heatmap=None)` -> {"heatmaps": [B, H, W]
      the heatmap scored (the mean of the K samples, in heatmap units), "samples": [B, K, H, W] the K individual
      heatmaps}, plus "inout_logit" [B] when the network predicts in/out itself.
    - `progressive(network, conditioning, device)`: one input's sampling step by step, yielding {"step",
      "pred_xstart"} (heatmap units) for the trajectory figures, or None when there is nothing to show.
    - `summary()`: how it samples, for metrics.json (the same keys for every formulation).
    """

    name: ClassVar[str] = ""
    diffuses: ClassVar[bool] = True  # a value of `diffusion_target` (the direct formulation diffuses nothing)
    loss_weight: float = 1.0  # the training step's weight on the summed per-sample loss
    loss_name: ClassVar[str] = "loss_diffusion"  # the training statistic that loss is logged as
    # v of the original DiffusionGaze code's map of the network's raw output back to [0, 1], (out + v) / 2v, which
    # its KL term used (engine.losses.heatmap_kl_original); 1.0 where the output is a [0, 1] map already.
    original_output_scale: float = 1.0

    @classmethod
    def samplers(cls) -> tuple[str, ...]:
        """The sampler names (besides "auto") this formulation can run: the `sampler` option's choices for it."""
        return ()

    @classmethod
    def check_config(cls, config, at: Callable[[str], str], changed: tuple[str, ...] = ()) -> None:
        """Raise ValueError when the configuration cannot run with this formulation. at(name) says an option and
        where its value came from; `changed` names the options a YAML file or flag set away from their default."""
        check_sampler(cls, config, at)

    @classmethod
    def from_config(cls, config) -> "Formulation":
        raise NotImplementedError

    def network(self, model) -> Callable:
        raise NotImplementedError

    def conditioning(self, model, features: dict) -> dict:
        return model.denoiser_kwargs(features)

    def training_losses(self, model, features: dict, targets: TrainingTargets) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def sample(self, network, conditioning: dict, batch_size: int, device: torch.device, autocast=nullcontext,
               start_heatmap: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def progressive(self, network, conditioning: dict, device: torch.device) -> Iterator[dict] | None:
        return None

    def unit_heatmap(self, pred_xstart: torch.Tensor) -> torch.Tensor:
        """training_losses' "pred_xstart" in heatmap units ([0, 1] for a perfect prediction), for the extra losses
        that compare maps; the identity where the network predicts the heatmap itself."""
        return pred_xstart

    @property
    def sampling_steps(self) -> int:
        """Grid points of the sampling (the steps of a trajectory figure); 1 for a single forward pass."""
        return 1

    def summary(self) -> dict[str, Any]:
        raise NotImplementedError


def check_sampler(cls: type[Formulation], config, at) -> None:
    """The configured sampler must be one this formulation runs."""
    names = cls.samplers()
    if config.sampler != "auto" and config.sampler not in names:
        runs = f"samples with {', '.join(('auto', *names))}" if names else "runs no sampler (sampler: auto)"
        raise ValueError(f"{at('sampler')} = {config.sampler!r} is not a sampler of {describe(cls, config, at)}, "
                         f"which {runs}")


def describe(cls: type[Formulation], config, at) -> str:
    """The option(s) that chose formulation `cls`, as an error message names them."""
    if cls.diffuses:
        return f"{at('diffusion_target')} = {config.diffusion_target!r}"
    return f"{at('heatmap_decoder')} = {config.heatmap_decoder!r}"


def last(steps: Iterator[dict]) -> dict:
    """The final item of a sampling iterator."""
    final = None
    for final in steps:
        pass
    return final
