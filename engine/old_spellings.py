"""The original's spellings of choices that are now one option with named values, translated where they enter.

The original chose the learning-rate schedule with a pair of switches (`lr_schedular`, `warmup_linear`, plus
guided-diffusion's `lr_anneal_steps`) and the gaze backbone with layout flags (`attention_layout`, `depth_layout`).
The project has one option for each choice, `lr_schedule` and `gaze_backbone` (and `extra_loss` for the switches
`other_loss` / `kl_div_loss` / `location_loss`, whose meaning depends on the files' layout: engine.original_layout
reads those before `translate` runs); the old keys stay accepted in every
YAML file (this project's layout and DiffusionGaze's), on the command line and in configurations stored by earlier
versions (engine.stored_config), and mean what they meant:

- `lr_schedular: true` = `lr_schedule: warmup_cosine`; `warmup_linear: true` = `lr_schedule: warmup_constant`;
  both true is an error. `lr_anneal_steps: N > 0` with `lr_schedule` left unset = `lr_schedule: linear_anneal`.
- `attention_layout: true` = `gaze_backbone: chong`.
- `depth_flag: true` with `gaze_backbone: original` (the default) is DiffusionGaze's depth model,
  `diffusiongaze_depth`, unless `depth_layout: tonini` asks for Tonini et al.'s depth tokens on the original's streams
  (`original_depth_tokens`; with chong, Tonini et al.'s depth stream is chong's own).

An old key that says the same as the current option is fine; one that says something else is an error naming both,
unless one of them was given with a higher precedence (a flag over a YAML file). `translate` runs once, on the
merged values (engine.config.load_config), or on a stored configuration; afterwards the old keys are gone, so the
rest of the project reads `config.lr_schedule` and `config.gaze_backbone` only.
"""
from __future__ import annotations

from typing import Any

from engine.option_rules import ConfigError
from engine.options import BOOL, GAZE, LEGACY_OPTIONS, STR, TRAIN, Option

SCHEDULE_SWITCHES = {"lr_schedular": "warmup_cosine", "warmup_linear": "warmup_constant"}
STORED_BY_THIS_VERSION = "lr_schedule"  # stored configurations with this option speak the current names

OLD_SPELLINGS: tuple[Option, ...] = (
    Option("lr_schedular", BOOL, False, TRAIN, "The original's switch: true = lr_schedule warmup_cosine.",
           replaced_by="lr_schedule"),
    Option("warmup_linear", BOOL, False, TRAIN, "The original's switch: true = lr_schedule warmup_constant.",
           replaced_by="lr_schedule"),
    Option("attention_layout", BOOL, False, GAZE, "The original's switch: true = gaze_backbone chong.",
           replaced_by="gaze_backbone"),
    Option("depth_layout", STR, "diffusiongaze", GAZE,
           "With depth_flag: diffusiongaze = DiffusionGaze's depth model (gaze_backbone diffusiongaze_depth); tonini = "
           "Tonini et al.'s depth tokens (gaze_backbone original_depth_tokens, or chong's depth stream).",
           choices=("tonini", "diffusiongaze"), replaced_by="gaze_backbone"),
    *LEGACY_OPTIONS,  # other_loss, kl_div_loss, location_loss: extra_loss, read by engine.original_layout.resolve
)


def precedence(source: str) -> int:
    """0 for a default, 1 for a YAML file or a stored configuration, 2 for a flag, 3 for Config.replace()."""
    if source.startswith("default"):
        return 0
    if source.startswith(("command line", "--", "override")):
        return 2
    if source.startswith("replace()"):
        return 3
    return 1


def translate(values: dict[str, Any], sources: dict[str, str], stored: bool = False) -> None:
    """Turn the old keys among `values` (and `sources`) into lr_schedule and gaze_backbone, in place.

    stored: `values` is a configuration stored in a checkpoint. One written before the rename (it has no
    `lr_schedule`; this version stores every option) and before `depth_layout` existed was trained with Tonini et
    al.'s depth tokens, the only depth model then.
    """
    written_before = sources.get(STORED_BY_THIS_VERSION, "default").startswith("default")
    if stored and written_before and "depth_layout" not in values:
        values["depth_layout"] = "tonini"
        sources["depth_layout"] = "the depth model of configurations stored before depth_layout existed (stored)"
    old = {name: (values.pop(name), sources.pop(name)) for name in [o.name for o in OLD_SPELLINGS] if name in values}
    if "lr_schedule" in values:
        _lr_schedule(values, sources, old)
    if "gaze_backbone" in values:
        _gaze_backbone(values, sources, old)


def _at(name: str, source: str) -> str:
    return f"'{name}' ({source})"


def _lr_schedule(values: dict[str, Any], sources: dict[str, str], old: dict[str, tuple[Any, str]]) -> None:
    on = [name for name in SCHEDULE_SWITCHES if old.get(name, (False,))[0] is True]
    if len(on) == 2:
        raise ConfigError(f"{_at(on[0], old[on[0]][1])} and {_at(on[1], old[on[1]][1])} are both true: choose one "
                          "schedule (lr_schedule: warmup_cosine or warmup_constant)")
    current, source = values["lr_schedule"], sources["lr_schedule"]
    if on:
        name = on[0]
        value, where = SCHEDULE_SWITCHES[name], old[name][1]
        if current != value:
            if precedence(where) > precedence(source):
                values["lr_schedule"], sources["lr_schedule"] = value, f"{where}, as {name}: true"
            elif precedence(where) == precedence(source):
                raise ConfigError(f"{_at(name, where)} = True means lr_schedule {value!r}, but "
                                  f"{_at('lr_schedule', source)} = {current!r}: give one of them")
    else:  # `--lr_schedular false` turns off the schedule a file chose with the new spelling
        for name, value in SCHEDULE_SWITCHES.items():
            if name in old and current == value and precedence(old[name][1]) > precedence(source):
                values["lr_schedule"], sources["lr_schedule"] = "constant", f"{old[name][1]}, as {name}: false"
    anneal = values.get("lr_anneal_steps") or 0
    if anneal > 0 and precedence(sources["lr_schedule"]) == 0:  # guided-diffusion's spelling of the decay
        values["lr_schedule"] = "linear_anneal"
        sources["lr_schedule"] = f"{sources['lr_anneal_steps']}, as lr_anneal_steps > 0"


def _gaze_backbone(values: dict[str, Any], sources: dict[str, str], old: dict[str, tuple[Any, str]]) -> None:
    if old.get("attention_layout", (False,))[0] is True:
        where = old["attention_layout"][1]
        if values["gaze_backbone"] not in ("original", "chong"):
            raise ConfigError(f"{_at('attention_layout', where)} = True selects gaze_backbone 'chong' (the original's "
                              f"spelling), but {_at('gaze_backbone', sources['gaze_backbone'])} = "
                              f"{values['gaze_backbone']!r}: set one of them")
        if values["gaze_backbone"] == "original":
            values["gaze_backbone"], sources["gaze_backbone"] = "chong", f"{where}, as attention_layout: true"
    layout, layout_source = old.get("depth_layout", ("diffusiongaze", "default"))
    name, source = values["gaze_backbone"], sources["gaze_backbone"]
    if not values.get("depth_flag"):
        if layout != "diffusiongaze" and not layout_source.endswith("(stored)"):
            raise ConfigError(f"{_at('depth_layout', layout_source)} = {layout!r} is read only with 'depth_flag' on, "
                              f"but 'depth_flag' ({sources.get('depth_flag', 'default')}) = False: leave "
                              "'depth_layout' out")
        return
    if layout == "tonini":
        if name == "original":
            values["gaze_backbone"], sources["gaze_backbone"] = ("original_depth_tokens",
                                                                 f"{layout_source}, as depth_layout: tonini")
        elif name == "diffusiongaze_depth":
            raise ConfigError(f"{_at('depth_layout', layout_source)} = 'tonini' asks for Tonini et al.'s depth tokens, "
                              f"but {_at('gaze_backbone', source)} = 'diffusiongaze_depth' is DiffusionGaze's depth "
                              "model: set one of them")
        return
    if name == "original":  # the original's depth_flag: its depth model
        values["gaze_backbone"] = "diffusiongaze_depth"
        sources["gaze_backbone"] = (f"{sources['depth_flag']}, as depth_flag with gaze_backbone 'original' "
                                    "(DiffusionGaze's depth model)")
    elif name != "diffusiongaze_depth" and precedence(layout_source) > 0 and not layout_source.endswith("(stored)"):
        raise ConfigError(f"{_at('depth_layout', layout_source)} = 'diffusiongaze' selects gaze_backbone "
                          f"'diffusiongaze_depth', but {_at('gaze_backbone', source)} = {name!r}: set one of them")
