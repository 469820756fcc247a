"""A checkpoint's stored configuration decides the experiment: evaluating its weights and resuming its run start from
it, and only a declared few options may differ.

- Evaluation (`--eval_weights`, predict.py): the model, the diffusion process and the data pipeline are built from the
  stored configuration. An option given in a YAML file or a flag that differs from it is applied when it is an
  evaluation-time option (`EVALUATION_TIME`: the sampler, the test data, batch size, workers, outputs, ...) and
  recorded in metrics.json; any other difference is an error naming the option and both values.
- Resume: an option given differently from the run's is applied when it may change within one run (`RESUMABLE`:
  epochs, cadences, workers, output-only options) and recorded in config.yaml with the step; any other difference is an
  error, since the run would mix two experiments.

Every option not listed here must match: a new option is part of the experiment unless it is added to a table.
Options left at their default (not given in a YAML file or flag) take the stored value. An option the checkpoint does
not store (it predates the option) counts as trained with the option's default.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from engine.config import Config, ConfigError, _option, _table, convert_value
from engine.options import OptionTable
from engine.original_layout import translate_stored_loss_switches

# Options that choose how trained weights are evaluated, not what was trained.
EVALUATION_TIME: dict[str, str] = {
    # where the job runs and writes
    "tag": "output", "output_dir": "output", "device": "execution", "amp": "execution", "channels_last": "execution",
    "torch_compile": "execution", "sync_batchnorm": "execution", "num_workers": "execution",
    "eval_metric_workers": "execution", "seed": "sampling noise", "no_resume": "training only",
    "no_save": "training only",
    # which weights and how they are read
    "eval_weights": "weights", "trust_legacy_checkpoint": "weights", "ema_on": "weights (the EMA or the raw model)",
    "original_ema_mix": "weights",
    "init_weights": "training only", "init_weights_scheme": "weights", "init_weights_rules": "weights",
    # the test data and its protocol
    "source_dataset_dir": "data location", "eval_dataset": "test data", "eval_dataset_dir": "test data",
    "batch_size": "evaluation batch", "eval_batch_size": "evaluation batch", "gaze_point_threshold": "test protocol",
    "test_subsample_fraction": "test data", "invalid_annotations": "test data (impossible rows: error or skip)",
    "skip_validation": "execution",
    # the sampler
    "sampler": "sampler", "sample_time_steps": "sampler", "ddim_eta": "sampler", "sample_k": "sampler",
    "clip_denoised": "sampler", "eval_from_picture": "sampler", "time_noise": "sampler", "picture_source": "sampler",
    "compat_original_ddim_step": "sampler", "compat_original_std_state": "sampler",
    # figures and logging
    "Debugging_maps": "figures", "debug_maps_per_group": "figures", "debug_trajectories": "figures",
    "print_every": "logging", "no_wandb": "logging", "watch_wandb": "logging",
    # the gaze backbone's code location and training-only aids
    "backbone_plugins": "plug-in location (the same code, moved)", "feature_cache": "training only",
    "feature_cache_dtype": "training only", "train_augmentations": "training only",
}

# Options that may change when a run resumes: they do not change what is trained.
RESUMABLE: dict[str, str] = {
    "epochs": "length of the run (extend it)", "evaluate_every": "evaluation cadence", "save_every": "saving cadence",
    "save_every_steps": "saving cadence", "print_every": "logging cadence", "num_workers": "workers",
    "eval_metric_workers": "workers", "eval_batch_size": "evaluation batch", "no_wandb": "logging",
    "watch_wandb": "logging", "Debugging_maps": "figures", "debug_maps_per_group": "figures",
    "debug_trajectories": "figures", "no_save": "output", "tag": "output (a renamed run folder)",
    "output_dir": "output (a moved run folder)", "source_dataset_dir": "data location (the same data, moved)",
    "eval_dataset_dir": "data location (the same data, moved)", "no_resume": "run control",
    "trust_legacy_checkpoint": "run control", "init_weights": "read only by a fresh start",
    "skip_validation": "run control (the data is the same)",
    "backbone_plugins": "plug-in location (the same code, moved)",
    "feature_cache": "cache folder (cached tokens equal the frozen encoder's)",
}


@dataclass(frozen=True)
class Change:
    """An option whose value differs from the stored one: `stored` in the checkpoint, `given` by `source`."""

    name: str
    stored: Any
    given: Any
    source: str

    def __str__(self) -> str:
        return f"{self.name}: {self.stored!r} -> {self.given!r} ({self.source})"


# Options added with a default that would change what a configuration stored before they existed means: such a
# stored configuration is read with the value that reproduces its run (the depth model of this project's earlier
# versions was the Tonini-style fusion; `depth_layout: diffusiongaze` arrived later as the new default).
STORED_BEFORE_OPTION_EXISTED: dict[str, Any] = {"depth_layout": "tonini"}


def given_options(config: Config) -> dict[str, tuple[Any, str]]:
    """{name: (value, source)} of the options a YAML file, a flag or `replace()` set (not left at their default)."""
    return {name: (value, config.sources[name]) for name, value in config.to_dict().items()
            if config.sources.get(name, "default") != "default"}


def apply_stored_config(stored: Mapping[str, Any], given: Mapping[str, tuple[Any, str]], allowed: Mapping[str, str],
                        *, checkpoint: str, purpose: str, table: OptionTable | None = None) -> tuple[Config, list[Change]]:
    """The stored configuration with the `given` options that differ from it and are `allowed` applied.

    purpose: "evaluation" or "resume", for the messages. Raises ConfigError listing every other difference (option,
    stored value, given value and where it was given), or naming a stored option this version does not know.
    """
    table = _table(table)
    stored = {table.aliases.get(name, name): value for name, value in stored.items()}  # renamed options
    if table.original_layout is not None:  # the old loss switches: extra_loss, with their meaning then
        stored = translate_stored_loss_switches(dict(stored), checkpoint)
    stored = {**{k: v for k, v in STORED_BEFORE_OPTION_EXISTED.items() if k in table.by_name}, **stored}
    unknown = sorted(set(stored) - set(table.by_name))
    if unknown:
        raise ConfigError(f"{checkpoint}: its stored configuration has options this version does not know: "
                          f"{', '.join(unknown)}; it was written by another version of the code")
    values, sources = {}, {}
    for option in table.options:
        if option.name in stored:
            values[option.name] = convert_value(option, stored[option.name], f"{checkpoint} (stored configuration)")
            sources[option.name] = f"{checkpoint} (stored)"
        else:
            values[option.name], sources[option.name] = option.default, f"default (not stored in {checkpoint})"
    changes, refused = [], []
    for name, (value, source) in given.items():
        option = _option(name, source, table)
        value = convert_value(option, value, source)
        if value != values[option.name]:
            (changes if option.name in allowed else refused).append(Change(option.name, values[option.name], value,
                                                                           source))
    if refused:
        listed = "; ".join(f"'{c.name}' is {c.stored!r} in the checkpoint but {c.given!r} in {c.source}"
                           for c in refused)
        if purpose == "evaluation":
            advice = ("evaluation builds the model, the diffusion process and the data pipeline from the configuration "
                      "stored in the checkpoint: leave these options out (or drop the YAML files); only evaluation-time "
                      "options (the sampler, the test data, batch size, workers, device, outputs; README, 'What the "
                      "framework checks for you') may differ")
        else:
            advice = ("a resumed run continues one experiment: resume with the stored values (leave the options out), "
                      "or start a separate run with another --tag; only these may change on resume: "
                      + ", ".join(sorted(allowed)))
        raise ConfigError(f"{checkpoint}: {listed}: {advice}")
    for change in changes:
        values[change.name], sources[change.name] = change.given, change.source
    config = Config(values, sources, table)
    table.validate(config)
    return config, changes


def stored_configuration(checkpoint: Any, table: OptionTable | None = None) -> Mapping[str, Any] | None:
    """The configuration a checkpoint written by main.py stores, or None (a bare state dict, another project's file).
    A "config" entry with keys this project does not know counts as ours only in a file marked with this project's
    "format" (then apply_stored_config reports the unknown keys); in any other file it is another project's."""
    stored = checkpoint.get("config") if isinstance(checkpoint, Mapping) else None
    if not isinstance(stored, Mapping):
        return None
    table = _table(table)
    known = set(table.by_name) | {option.name for option in getattr(table.original_layout, "legacy_options", ())}
    if "format" not in checkpoint and not {table.aliases.get(k, k) for k in stored} <= known:
        return None
    return stored


def evaluation_config(checkpoint: Any, given: Mapping[str, tuple[Any, str]], *, weights: str,
                      table: OptionTable | None = None) -> tuple[Config, list[Change]] | None:
    """The configuration to evaluate or predict with `checkpoint` (loaded from `weights`): its stored configuration
    with the evaluation-time options of `given` applied (main.py's --eval_weights and predict.py both come here), or
    None when the file stores no configuration (the caller then builds from the YAML files it was given)."""
    stored = stored_configuration(checkpoint, table)
    if stored is None:
        return None
    return apply_stored_config(stored, given, EVALUATION_TIME, checkpoint=weights, purpose="evaluation", table=table)
