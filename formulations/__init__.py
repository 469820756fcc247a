"""Formulations: what is diffused (or decoded) and how the heatmap comes out, one small class per file, registered
by name and built once from the configuration (docs/formulations.md).

- `heatmap` (formulations/heatmap.py): the target heatmap is diffused (branch main of the original).
- `point` (point.py): the gaze point is diffused and rendered (branch PointLoss); its own DDIM over the point.
- `point_image` (point_image.py): the point, its rendered heatmap noised again (branch point_image_diffusion).
- `direct` (direct.py): a direct heatmap decoder, one forward pass, nothing diffused.

`diffusion_target` chooses among the first three for the diffusion decoder; a `heatmap_decoder` of kind "direct"
chooses `direct`. This room imports only diffusion/, models/ and datasets/; engine/, eval/ and inference/ import it.
"""
from __future__ import annotations

from types import SimpleNamespace

from formulations import direct, heatmap, point, point_image  # noqa: F401  (register the built-in formulations)
from formulations.base import FORMULATIONS, Formulation, TrainingTargets, register_formulation
from formulations.gaussian import build_sampling_diffusion, build_training_diffusion, sdedit_start_step
from models.decoders import HEATMAP_DECODERS, decoder_spec

__all__ = [
    "FORMULATIONS", "Formulation", "TrainingTargets", "build_formulation", "build_sampling_diffusion",
    "build_training_diffusion", "check_config", "decoder_choices", "diffusion_targets", "formulation_class",
    "register_formulation", "sampler_choices", "sdedit_start_step", "stored_formulation_class",
]


def formulation_class(config) -> type[Formulation]:
    """The formulation the options select: `diffusion_target` for a diffusion decoder, `direct` for a direct one."""
    spec = decoder_spec(getattr(config, "heatmap_decoder", "diffusion"))
    name = config.diffusion_target if spec.kind == "diffusion" else "direct"
    if name not in FORMULATIONS:
        raise KeyError(f"unknown formulation {name!r}; registered: {sorted(FORMULATIONS)} (a plug-in of "
                       "backbone_plugins registers its name with @register_formulation)")
    return FORMULATIONS[name]


def stored_formulation_class(values) -> type[Formulation]:
    """formulation_class of a stored configuration (a mapping of option values, e.g. a Hub folder's config.json);
    options it does not store take their defaults."""
    return formulation_class(SimpleNamespace(heatmap_decoder=values.get("heatmap_decoder", "diffusion"),
                                             diffusion_target=values.get("diffusion_target", "heatmap")))


def build_formulation(config) -> Formulation:
    return formulation_class(config).from_config(config)


def check_config(config, at, changed: tuple[str, ...] = ()) -> None:
    """The selected formulation's checks (engine.config.validate calls this once, before data or model)."""
    formulation_class(config).check_config(config, at, changed)


def diffusion_targets() -> tuple[str, ...]:
    """The `diffusion_target` choices: every registered formulation that diffuses something."""
    return tuple(name for name, cls in FORMULATIONS.items() if cls.diffuses)


def sampler_choices() -> tuple[str, ...]:
    """The `sampler` choices: "auto" and every sampler some registered formulation runs."""
    names = dict.fromkeys(name for cls in FORMULATIONS.values() for name in cls.samplers())
    return ("auto", *names)


def decoder_choices() -> tuple[str, ...]:
    """The `heatmap_decoder` choices: every registered heatmap decoder."""
    return tuple(HEATMAP_DECODERS)
