"""Initial weights from checkpoints of this or other projects: unwrap the file, detect its naming scheme, rename the
keys, compare them with the model, report what matches and what does not, and only then load."""

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping

import torch
from torch import nn

from pretrained.files import (  # noqa: F401  (re-exported)
    TRAINER_USES, TRAINERS, CheckpointError, load_checkpoint, load_safetensors, trainer_of,
)
from pretrained.renaming import SCHEMES, rename_keys, rules_from_spec

logger = logging.getLogger(__name__)

# Where the known projects keep the state dict inside a checkpoint file (Chong: "model"; Tonini, DiffusionGaze:
# "model_state_dict"; many others: "state_dict").
STATE_DICT_CONTAINERS = ("model", "model_state_dict", "state_dict")
# Where the exponential moving average of the weights is kept: this project ("ema"), DiffusionGaze ("ema_params", a
# full state dict whose parameters are averaged and whose buffers are the model's).
EMA_CONTAINERS = ("ema", "ema_params")

# A key starting with one of these identifies the scheme; the prefixes of different schemes never overlap.
SCHEME_SIGNATURES = {
    "diffusiongaze": r"(gaze_model|sequential)\.",
    "tonini": r"(scene_backbone|face_backbone|inout_decoder)\.",
    "chong": r"(conv1|bn1|layer\d+)_(scene|face)\.",
    "project": r"(gaze_backbone|unet|heatmap_decoder|inout_head)\.",
}


@dataclass
class LoadReport:
    """What a checkpoint gave the model. Target names are the model's; source names are the checkpoint's."""

    scheme: str
    source: str  # the checkpoint file, or "state dict" when given one in memory
    loaded: list[str] = field(default_factory=list)  # target keys filled from the checkpoint
    missing: list[str] = field(default_factory=list)  # target keys the checkpoint does not provide (left as they are)
    unexpected: list[str] = field(default_factory=list)  # renamed keys the model does not have
    unmatched: list[str] = field(default_factory=list)  # source keys no renaming rule matches
    # Source keys a rule marks as having no place in this project, or that the model declares it does not use
    # (`ignored_checkpoint_keys`).
    dropped: list[str] = field(default_factory=list)
    shape_mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # (target key, file, model shape)

    @property
    def unused(self) -> list[str]:
        """Every checkpoint entry that was not loaded: unexpected keys (under their new names), unmatched, dropped."""
        return self.unexpected + self.unmatched + self.dropped

    def summary(self) -> str:
        lines = [f"init weights from {self.source} (scheme {self.scheme!r}): loaded {len(self.loaded)} tensors"]
        for title, keys in (("missing in the checkpoint", self.missing), ("unexpected (not in the model)",
                            self.unexpected), ("matched by no renaming rule", self.unmatched),
                            ("dropped (no place in this model)", self.dropped)):
            if keys:
                lines.append(f"  {title}: {len(keys)} keys: {_group(keys)}")
        for key, file_shape, model_shape in self.shape_mismatched:
            lines.append(f"  shape mismatch {key}: checkpoint {list(file_shape)}, model {list(model_shape)}")
        return "\n".join(lines)


def load_checkpoint_state(path: str | os.PathLike, trust_legacy: bool = False,
                          ema: bool = False) -> dict[str, torch.Tensor]:
    """The state dict of a checkpoint file: a raw state dict, or one under "model" / "model_state_dict" /
    "state_dict" (with `ema`: the averaged weights under "ema" / "ema_params"). A "module." prefix on every key
    (DataParallel) is removed. `.safetensors` files hold a raw state dict. `trust_legacy`: see
    engine.checkpoint.load_checkpoint."""
    if str(path).endswith(".safetensors"):
        state, metadata = load_safetensors(path)
        if ema and metadata.get("evaluated_weights") != "ema":
            raise CheckpointError(f"{path}: EMA weights were requested (ema_on) but this file holds "
                             f"{metadata.get('evaluated_weights', 'model')!r} weights (its metadata)")
        return state
    containers = EMA_CONTAINERS if ema else STATE_DICT_CONTAINERS
    return unwrap_state_dict(load_checkpoint(path, trust_legacy=trust_legacy), source=str(path),
                             containers=containers)


def unwrap_state_dict(checkpoint, source: str = "checkpoint",
                      containers: tuple[str, ...] = STATE_DICT_CONTAINERS) -> dict[str, torch.Tensor]:
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"{source}: expected a mapping (a state dict or a checkpoint dict), got "
                              f"{type(checkpoint)}")
    if containers != EMA_CONTAINERS and checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        state = checkpoint
    else:
        found = [name for name in containers if isinstance(checkpoint.get(name), Mapping)]
        if not found:
            what = "EMA weights" if containers == EMA_CONTAINERS else "state dict"
            raise CheckpointError(
                f"{source}: no {what} found: expected a mapping of tensors or one under "
                f"{' / '.join(containers)}; top-level keys are {sorted(checkpoint)[:20]}"
            )
        state = checkpoint[found[0]]
        source = f"{source}[{found[0]!r}]"
    not_tensors = [key for key, value in state.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{source}: state dict entries that are not tensors: {not_tensors[:10]}")
    if state and all(key.startswith("module.") for key in state):
        logger.info("%s: removing the DataParallel prefix 'module.' from all %d keys", source, len(state))
        state = {key[len("module."):]: value for key, value in state.items()}
    return dict(state)


def detect_scheme(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Name of the naming scheme (a key of SCHEMES) whose signature prefixes the checkpoint's keys use."""
    hits = {name: sum(bool(re.match(pattern, key)) for key in state_dict)
            for name, pattern in SCHEME_SIGNATURES.items()}
    found = [name for name, count in hits.items() if count]
    if len(found) != 1:
        reason = "no known" if not found else "several"
        raise ValueError(
            f"cannot detect the checkpoint's naming scheme: {reason} scheme signatures match (keys per scheme: "
            f"{hits}); first keys: {list(state_dict)[:8]}. Pass scheme= one of {sorted(SCHEMES)} or extra_rules"
        )
    return found[0]


def load_init_weights(model: nn.Module, path_or_state, scheme: str | None = "auto", extra_rules=None,
                      trust_legacy: bool = False, ema: bool = False) -> LoadReport:
    """Rename a checkpoint's keys into `model`'s names, report the result and load the matching tensors.

    scheme: a name in SCHEMES, "auto" (detect_scheme) or None (extra_rules only). extra_rules (a list of
    (pattern, replacement) pairs or a mapping, e.g. from YAML) are tried before the scheme's rules.
    Raises ValueError, listing the keys, if any renamed tensor has a different shape from the model's.
    ema: load the file's averaged weights (EMA_CONTAINERS) instead of its model weights.
    """
    if isinstance(path_or_state, Mapping):
        source = "state dict"
        state = unwrap_state_dict(path_or_state, source)
    else:
        source = str(path_or_state)
        state = load_checkpoint_state(path_or_state, trust_legacy=trust_legacy, ema=ema)
    if scheme == "auto":
        try:
            scheme = detect_scheme(state)
        except ValueError as error:
            if not extra_rules:
                owner = trainer_of({"model": state})  # e.g. a Gaze360 model given to main.py: say whose it is
                hint = f"; it holds a model for {TRAINERS[owner]}: {TRAINER_USES[owner].format(path=source)}" \
                    if owner == "gaze360_main.py" else ""
                raise CheckpointError(f"{source}: {error}{hint}") from error
            scheme = None  # no known naming: the given rules alone rename the keys
    if scheme is not None and scheme not in SCHEMES:
        raise ValueError(f"unknown renaming scheme {scheme!r}; known: {sorted(SCHEMES)} (or 'auto', or None)")
    rules = (rules_from_spec(extra_rules) if extra_rules is not None else []) + (SCHEMES[scheme] if scheme else [])
    if not rules:
        raise ValueError("load_init_weights: scheme=None needs extra_rules")

    renamed, dropped, unmatched = rename_keys(state, rules)
    converted = {new: state[old] for old, new in renamed.items()}
    renamed_from = {new: old for old, new in renamed.items()}
    target = model.state_dict()
    report = LoadReport(scheme=scheme if scheme else "custom", source=source, dropped=dropped, unmatched=unmatched)
    ignored = ignored_checkpoint_prefixes(model)
    for key, tensor in converted.items():
        if key not in target:
            if key.startswith(ignored):
                report.dropped.append(renamed_from[key])
            else:
                report.unexpected.append(key)
        elif tensor.shape != target[key].shape:
            report.shape_mismatched.append((key, tuple(tensor.shape), tuple(target[key].shape)))
        else:
            report.loaded.append(key)
    report.missing = [key for key in target if key not in converted]
    logger.info(report.summary())
    if report.shape_mismatched:
        raise CheckpointError(
            f"{source}: {len(report.shape_mismatched)} tensors have other shapes than the model's (nothing loaded): "
            "the weights are of another architecture; build the model with the configuration they were trained "
            "with:\n" + "\n".join(f"  {key}: checkpoint {list(a)}, model {list(b)}"
                                   for key, a, b in report.shape_mismatched))
    model.load_state_dict({key: converted[key] for key in report.loaded}, strict=False)
    return report


def ignored_checkpoint_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Full-name prefixes of checkpoint entries the model knows it has no use for: a submodule may list, in
    `ignored_checkpoint_keys`, prefixes (relative to itself) of entries that the checkpoints it loads carry but it
    does not build (e.g. layers the original DiffusionGaze code built in every variant and used in only some)."""
    prefixes = []
    for name, module in model.named_modules():
        for key in getattr(module, "ignored_checkpoint_keys", ()):
            prefixes.append(f"{name}.{key}" if name else key)
    return tuple(prefixes)


def _group(keys: list[str], depth: int = 2) -> str:
    """'prefix (count), ...' with keys grouped by their first `depth` name components, for readable summaries."""
    counts = Counter(".".join(key.split(".")[:depth]) for key in keys)
    return ", ".join(f"{prefix} ({count})" for prefix, count in counts.items())


# What `evaluated_weights` in metrics.json names (see load_eval_weights).
EVALUATED_WEIGHTS = {
    "model": "the trained (non-averaged) weights",
    "ema": "the exponential moving average of every weight",
    "ema_original_mix": "as the original DiffusionGaze code evaluated its EMA: the gaze backbone's own weights "
                        "(model_state_dict) with the averaged UNet and in/out head (ema_params)",
}


def is_original_diffusiongaze_checkpoint(checkpoint) -> bool:
    """A checkpoint written by the original DiffusionGaze code: its weights and their average side by side."""
    return (isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("model_state_dict"), Mapping)
            and isinstance(checkpoint.get("ema_params"), Mapping))


def original_ema_mix(checkpoint: Mapping, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The weights the original evaluated with `ema_on` (its main.py, evaluation branch): in the file's key order,
    every entry before the first UNet key (`model.`, i.e. the gaze backbone) from `model_state_dict`, every entry
    from there on (UNet, in/out head) from `ema_params`. Keys keep the original's names."""
    model = unwrap_state_dict(checkpoint, source, containers=("model_state_dict",))
    averaged = unwrap_state_dict(checkpoint, source, containers=("ema_params",))
    keys = list(averaged)
    first_unet = next((i for i, key in enumerate(keys) if key.startswith("model.")), None)
    if first_unet is None:
        raise CheckpointError(f"{source}: its ema_params hold no UNet ('model.') key; cannot form the original's EMA "
                              "mix")
    backbone = list(model)[:first_unet]
    return {**{key: model[key] for key in backbone}, **{key: averaged[key] for key in keys[first_unet:]}}


def load_eval_weights(model: nn.Module, config) -> tuple[LoadReport, str]:
    """Load `config.eval_weights` for evaluation with the renaming of `init_weights_scheme` and
    `init_weights_rules`. With `ema_on`: the file's averaged weights, and for a checkpoint of the original
    DiffusionGaze code (with `original_ema_mix`, the default) the mix the original evaluated. Returns the report and
    the name of the weights evaluated (a key of EVALUATED_WEIGHTS)."""
    path = str(config.eval_weights)
    rename = dict(scheme=config.init_weights_scheme, extra_rules=config.init_weights_rules)
    if path.endswith(".safetensors"):  # one set of weights, named in its metadata
        report = load_init_weights(model, path, ema=config.ema_on, **rename)
        return report, load_safetensors(path)[1].get("evaluated_weights", "model")
    checkpoint = load_checkpoint(path, trust_legacy=config.trust_legacy_checkpoint)
    if config.ema_on and getattr(config, "original_ema_mix", True) and is_original_diffusiongaze_checkpoint(checkpoint):
        state, kind = original_ema_mix(checkpoint, path), "ema_original_mix"
    else:
        containers = EMA_CONTAINERS if config.ema_on else STATE_DICT_CONTAINERS
        state, kind = unwrap_state_dict(checkpoint, path, containers=containers), "ema" if config.ema_on else "model"
    report = load_init_weights(model, state, **rename)
    report.source = path if kind == "model" else f"{path} ({kind})"
    return report, kind
