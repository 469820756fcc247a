"""A checkpoint's stored configuration decides the experiment: evaluating its weights and resuming its run start from
it, and only a declared few options may differ.

- Evaluation (`--eval_weights`, predict.py): the model, the diffusion process and the data pipeline are built from the
  stored configuration. An option given in a YAML file or a flag that differs from it is applied when its declaration
  says it may differ at evaluation (`Option.evaluation`: the sampler, the test data, batch size, workers, outputs, ...)
  and recorded in metrics.json; any other difference is an error naming the option and both values.
- Resume: an option given differently from the run's is applied when its declaration says it may change within one
  run (`Option.resume`: epochs, cadences, workers, output-only options; `resume_unless` where that depends on another
  option) and recorded in config.yaml with the step; any other difference is an error, since the run would mix two
  experiments.

Every option whose declaration says neither must match: a new option is part of the experiment unless it says so.
Options left at their default (not given in a YAML file or flag) take the stored value. An option the checkpoint does
not store (it predates the option) counts as trained with the option's default; the original's spellings a stored
configuration may hold (engine.old_spellings) are translated first.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from engine.config import Config, ConfigError, _option, _table, check_buildable, convert_value
from engine.option_rules import resume_fixed
from engine.options import OptionTable
from engine.original_layout import translate_stored_loss_switches

# The gaze-following tables, from the declarations (gaze360.options.GAZE360.evaluation_time() etc. for Gaze360).
EVALUATION_TIME: dict[str, str] = _table(None).evaluation_time()
RESUMABLE: dict[str, str] = _table(None).resumable()


@dataclass(frozen=True)
class Change:
    """An option whose value differs from the stored one: `stored` in the checkpoint, `given` by `source`."""

    name: str
    stored: Any
    given: Any
    source: str

    def __str__(self) -> str:
        return f"{self.name}: {self.stored!r} -> {self.given!r} ({self.source})"


def given_options(config: Config) -> dict[str, tuple[Any, str]]:
    """{name: (value, source)} of the options a YAML file, a flag or `replace()` set (not left at their default)."""
    return {name: (value, config.sources[name]) for name, value in config.to_dict().items()
            if config.sources.get(name, "default") != "default"}


def apply_stored_config(stored: Mapping[str, Any], given: Mapping[str, tuple[Any, str]],
                        allowed: Mapping[str, str] | None = None, *, checkpoint: str, purpose: str,
                        table: OptionTable | None = None) -> tuple[Config, list[Change]]:
    """The stored configuration with the `given` options that differ from it and are `allowed` applied.

    purpose: "evaluation" or "resume", for the messages and for the default `allowed` table: the options whose
    declarations say they may differ then (`table.evaluation_time()` / `table.resumable()`). Raises ConfigError
    listing every other difference (option, stored value, given value and where it was given), or naming a stored
    option this version does not know.
    """
    table = _table(table)
    if allowed is None:
        allowed = table.evaluation_time() if purpose == "evaluation" else table.resumable()
    stored = {table.aliases.get(name, name): value for name, value in stored.items()}  # renamed options
    if table.original_layout is not None:  # the old loss switches: extra_loss, with their meaning then
        stored = translate_stored_loss_switches(dict(stored), checkpoint)
    readable = table.readable
    unknown = sorted(set(stored) - set(readable))
    if unknown:
        raise ConfigError(f"{checkpoint}: its stored configuration has options this version does not know: "
                          f"{', '.join(unknown)}; it was written by another version of the code")
    values, sources = {}, {}
    for name, value in stored.items():
        values[name] = convert_value(readable[name], value, f"{checkpoint} (stored configuration)")
        sources[name] = f"{checkpoint} (stored)"
    for option in table.options:
        if option.name not in values:
            values[option.name], sources[option.name] = option.default, f"default (not stored in {checkpoint})"
    if table.translate is not None:  # the original's spellings an earlier version stored
        table.translate(values, sources, stored=True)
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
                      "options (the sampler, the test data, batch size, workers, device, outputs; docs/options.md, "
                      "'may differ at') may differ")
        else:
            advice = ("a resumed run continues one experiment: resume with the stored values (leave the options out), "
                      "or start a separate run with another --tag; only these may change on resume: "
                      + ", ".join(sorted(allowed)))
        raise ConfigError(f"{checkpoint}: {listed}: {advice}")
    for change in changes:
        values[change.name], sources[change.name] = change.given, change.source
    config = Config(values, sources, table)
    if purpose == "resume":
        for change in changes:
            fixed = resume_fixed(table.by_name[change.name], config)
            if fixed is not None:
                raise ConfigError(f"{checkpoint}: {change} on resume, but {fixed}")
    table.validate(config)
    check_buildable(config)  # the model to build is this configuration's
    return config, changes


def stored_configuration(checkpoint: Any, table: OptionTable | None = None) -> Mapping[str, Any] | None:
    """The configuration a checkpoint written by main.py stores, or None (a bare state dict, another project's file).
    A "config" entry with keys this project does not know counts as ours only in a file marked with this project's
    "format" (then apply_stored_config reports the unknown keys); in any other file it is another project's."""
    stored = checkpoint.get("config") if isinstance(checkpoint, Mapping) else None
    if not isinstance(stored, Mapping):
        return None
    table = _table(table)
    if "format" not in checkpoint and not {table.aliases.get(k, k) for k in stored} <= set(table.readable):
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
    return apply_stored_config(stored, given, checkpoint=weights, purpose="evaluation", table=table)
