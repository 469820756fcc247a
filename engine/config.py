"""Resolve a run's configuration: declared defaults < YAML files < command-line flags, checked against `OPTIONS`.

Public entry points: `load_config(yaml_paths, overrides)` for notebooks and tests, and `parse_command_line(argv)`
for `main.py`. Both take an optional `table` (engine.options.OptionTable): the gaze-following options by default,
`gaze360.options.GAZE360` for `gaze360_main.py`. YAML files may be flat or group keys under any section names (the
original used `Dataset`, `Diffusion`, `experiment_parameter`, `losses_parameters`, `Gaze`), so existing files load
unchanged.
"""
from __future__ import annotations

import argparse
import difflib
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from engine.options import (
    BOOL, FLOAT, FRACTION, GROUPS, INT, INT_LIST, OPTIONS, OPTIONS_BY_NAME, ORIGINAL_EXTRA_LOSSES, RULES, STR, STR_LIST,
    Option, OptionTable,
)
from engine.original_layout import DIFFUSIONGAZE_LAYOUT


class ConfigError(ValueError):
    """A configuration value or file is wrong; the message names the file, line and key."""


class Config:
    """The resolved options as attributes (`config.lr`), plus `to_dict()` and `sources` (where each value came from)."""

    def __init__(self, values: Mapping[str, Any], sources: Mapping[str, str], table: OptionTable | None = None):
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "sources", dict(sources))
        object.__setattr__(self, "table", _table(table))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_values", "table", "sources"):  # copy/pickle probe before __init__
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"no option named {name!r}{_suggestion(name, self.table)}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Config is read-only; use config.replace(name=value)")

    def replace(self, **changes: Any) -> "Config":
        """A copy with some options changed (values are converted and checked like flags)."""
        values, sources = dict(self._values), dict(self.sources)
        for name, value in changes.items():
            if name in _legacy(self.table):
                raise ConfigError(f"replace(): '{name}' is an old switch of 'extra_loss' (read where files and flags "
                                  "enter); replace extra_loss itself (docs/losses.md)")
            option = _option(name, "replace()", self.table)
            values[name] = convert_value(option, value, "replace()")
            sources[name] = "replace()"
        return Config(values, sources, self.table)

    def to_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def to_yaml(self) -> str:
        """The resolved configuration grouped by section, loadable again with `load_config`."""
        grouped = {group: {o.name: self._values[o.name] for o in self.table.options if o.group == group}
                   for group in self.table.groups}
        return yaml.dump(grouped, Dumper=_FlowListDumper, sort_keys=False, default_flow_style=False)

    def __repr__(self) -> str:
        return f"Config({self._values!r})"


class _FlowListDumper(yaml.SafeDumper):
    """Writes mappings in block style and lists inline (`[3, 4, 6, 3, 2]`)."""


_FlowListDumper.add_representer(
    list, lambda dumper, value: dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=True))


# --- value conversion ---------------------------------------------------------------------------------------------

_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def convert_value(option: Option, value: Any, where: str) -> Any:
    """Convert `value` to the option's declared type, or raise ConfigError naming `where` and the key.

    Strings are accepted for numbers because PyYAML reads `1e-4` as a string.
    """

    def fail(expected: str) -> ConfigError:
        return ConfigError(f"{where}: key '{option.name}': expected {expected}, found {value!r} ({type(value).__name__})")

    if value is None or (isinstance(value, str) and value.strip() == "" and (option.kind != STR or option.nullable)):
        if option.nullable:
            return None
        raise fail(f"a value of type {option.kind} (null is not allowed)")
    kind = option.kind
    if kind == BOOL:
        if isinstance(value, bool):
            result = value
        elif isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            result = value.strip().lower() in _TRUE
        else:
            raise fail("true or false")
    elif kind == INT:
        result = _to_int(value)
        if result is None:
            raise fail("an integer")
    elif kind in (FLOAT, FRACTION):
        if kind == FRACTION and isinstance(value, bool):
            value = 0.1 if value else 0.0  # the original's boolean subsample flag meant 10 %
        result = _to_float(value)
        if result is None or not math.isfinite(result):
            raise fail("a number")
        if kind == FRACTION and not 0.0 <= result <= 1.0:
            raise fail("a fraction in [0, 1]")
    elif kind == STR:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise fail("a string")
        result = str(value)
    elif kind == INT_LIST:
        items = value.replace(",", " ").split() if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not items:
            raise fail("a non-empty list of integers")
        result = [_to_int(item) for item in items]
        if any(item is None for item in result):
            raise fail("a non-empty list of integers")
    elif kind == STR_LIST:  # a YAML scalar is one item, or several separated by commas (paths may hold spaces)
        items = [item for item in value.split(",") if item.strip()] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(item, str) for item in items):
            raise fail("a list of strings")
        result = [item.strip() for item in items]
        if option.choices is not None:
            unknown = [item for item in result if item not in option.choices]
            if unknown:
                raise ConfigError(f"{where}: key '{option.name}': expected items from {list(option.choices)}, "
                                  f"found {unknown}")
            return result
    elif kind == RULES:
        if not isinstance(value, list) or not all(
            isinstance(rule, (list, tuple)) and len(rule) == 2 and all(isinstance(part, str) for part in rule)
            for rule in value
        ):
            raise fail("a list of [regex, replacement] string pairs")
        result = [list(rule) for rule in value]
    else:  # pragma: no cover - a declaration error, caught by the tests of OPTIONS
        raise AssertionError(f"unknown option kind {kind}")
    if option.choices is not None and result not in option.choices:
        raise ConfigError(f"{where}: key '{option.name}': expected one of {list(option.choices)}, found {result!r}")
    return result


def _to_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            number = _to_float(value)
            return int(number) if number is not None and number.is_integer() else None
    return None


def _to_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _table(table: OptionTable | None) -> OptionTable:
    return GAZE_FOLLOWING if table is None else table


def _suggestion(name: str, table: OptionTable | None = None) -> str:
    table = _table(table)
    close = difflib.get_close_matches(name, list(table.by_name) + list(table.aliases), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _legacy(table: OptionTable | None = None) -> dict[str, Option]:
    """Old spellings the table's compatibility hook translates where they enter (engine.original_layout)."""
    hook = _table(table).original_layout
    return {option.name: option for option in getattr(hook, "legacy_options", ())}


def _option(name: str, where: str, table: OptionTable | None = None) -> Option:
    table = _table(table)
    if name in _legacy(table):
        return _legacy(table)[name]
    by_name = table.by_name
    canonical = table.aliases.get(name, name)
    if canonical not in by_name:
        raise ConfigError(f"{where}: unknown key '{name}'{_suggestion(name, table)}")
    return by_name[canonical]


# --- YAML -----------------------------------------------------------------------------------------------------------


def read_yaml_options(path: str | Path, table: OptionTable | None = None) -> dict[str, tuple[Any, str]]:
    """Read one YAML file into {option name: (converted value, "file:line")}.

    Mappings whose key is not an option are sections and are flattened (any depth). A key given twice in the file
    with different values, an unknown key or a badly typed value is a ConfigError naming the file and line.
    A file in an original program's layout (`table.original_layout`) is read with that program's meanings.
    """
    return _read_yaml(path, table)[0]


def _read_yaml(path: str | Path, table: OptionTable | None = None) -> tuple[dict[str, tuple[Any, str]], bool]:
    """(read_yaml_options's result, whether the file is in the table's original layout)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file not found: {path}")
    loader = yaml.SafeLoader(path.read_text())
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    finally:
        loader.dispose()
    found: dict[str, tuple[Any, str]] = {}
    if root is None:  # an empty file (or only comments) would silently mean "all defaults"
        raise ConfigError(f"{path}: the file is empty (no options): give the YAML file with the run's options, or "
                          "leave the flag out to use the defaults")
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{path}: expected a mapping of options at the top level")
    table = _table(table)
    # A file in an original program's layout (its section names) is read with that program's meanings.
    original = table.original_layout
    if original is not None and not original.detects([key.value for key, _ in root.value]):
        original = None
    _walk_mapping(root, path, found, table, original)
    if original is None:
        return found, False
    try:
        return original.translate(path, found, table), True
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _walk_mapping(node: yaml.MappingNode, path: Path, found: dict[str, tuple[Any, str]], table: OptionTable,
                  original=None) -> None:
    constructor = yaml.SafeLoader("")
    by_name, aliases = table.by_name, table.aliases
    for key_node, value_node in node.value:
        key = constructor.construct_object(key_node, deep=True)
        where = f"{path}:{key_node.start_mark.line + 1}"
        is_option = isinstance(key, str) and (aliases.get(key, key) in by_name or key in _legacy(table))
        if not is_option and isinstance(value_node, yaml.MappingNode):
            _walk_mapping(value_node, path, found, table, original)  # a section such as `Dataset:`
            continue
        option = _option(str(key), where, table)
        value = constructor.construct_object(value_node, deep=True)
        if original is not None:
            value = original.raw_value(option.name, value)
        value = convert_value(option, value, where)
        if option.name in found and found[option.name][0] != value:
            raise ConfigError(
                f"{where}: key '{key}' is set to {value!r} here but to {found[option.name][0]!r} at "
                f"{found[option.name][1]}"
            )
        found[option.name] = (value, where)


# --- resolution -----------------------------------------------------------------------------------------------------


def load_config(yaml_paths: Iterable[str | Path] = (), overrides: Mapping[str, Any] | None = None,
                table: OptionTable | None = None) -> Config:
    """Defaults < YAML files (which must agree with each other) < overrides (e.g. command-line flags).

    >>> config = load_config(["configs/diffusion.yaml", "configs/gaze.yaml"], {"epochs": 1, "device": "cpu"})
    """
    table = _table(table)
    values = {o.name: o.default for o in table.options}
    sources = {o.name: "default" for o in table.options}
    from_files: dict[str, tuple[Any, str]] = {}
    legacy_names = _legacy(table)
    original_layout = False
    for path in yaml_paths:
        found, original = _read_yaml(path, table)
        original_layout = original_layout or original
        for name, (value, where) in found.items():
            if name in from_files and from_files[name][0] != value:
                raise ConfigError(
                    f"{where}: key '{name}' is set to {value!r} here but to {from_files[name][0]!r} at "
                    f"{from_files[name][1]}; the YAML files must agree"
                )
            from_files[name] = (value, where)
    legacy = {name: from_files.pop(name) for name in list(from_files) if name in legacy_names}
    for name, (value, where) in from_files.items():
        values[name], sources[name] = value, where
    for name, value in (overrides or {}).items():
        option = _option(name, "override", table)
        if name in legacy_names:  # an old switch on the command line: translated with the files' (resolve)
            legacy[name] = (convert_value(option, value, f"--{name}"), "command line")
            continue
        values[option.name] = convert_value(option, value, f"--{option.name}")
        sources[option.name] = "command line"
    if original_layout or legacy:
        explicit = set(from_files) | {_option(name, "override", table).name for name in overrides or {}}
        try:
            table.original_layout.resolve(values, sources, explicit, legacy, original_layout)
        except ValueError as error:
            raise ConfigError(str(error)) from None
    config = Config(values, sources, table)
    table.validate(config)
    return config


_ADM_OPTIONS = ("adm_predict_xstart", "adm_predict_v", "adm_learn_sigma", "adm_use_kl", "adm_rescale_learned_sigmas",
                "adm_rescale_timesteps", "adm_sigma_small")


def validate(config: Config) -> None:
    """Cross-option checks; each error names the options involved and where their values came from."""

    def at(name: str) -> str:
        return f"'{name}' ({config.sources[name]})"

    if (config.eval_dataset not in (None, config.source_dataset)) and config.eval_dataset_dir is None:
        raise ConfigError(f"{at('eval_dataset')} = {config.eval_dataset!r} differs from {at('source_dataset')} = "
                          f"{config.source_dataset!r}: set 'eval_dataset_dir' to the folder of that dataset")
    if not config.adm:
        set_adm = [name for name in _ADM_OPTIONS if getattr(config, name)]
        if set_adm:
            raise ConfigError(
                f"{', '.join(at(n) for n in set_adm)} configure the ADM formulation, but {at('adm')} is false: the "
                f"simple formulation is configured by 'predict_sthg' only"
            )
    if config.extra_loss in ORIGINAL_EXTRA_LOSSES and config.adm and config.adm_use_kl:
        raise ConfigError(f"{at('extra_loss')} = {config.extra_loss!r} reads the network's output, which "
                          f"{at('adm_use_kl')} (the variational bound alone) does not train: the original's code "
                          "had no such output either")
    if config.adm_predict_xstart and config.adm_predict_v:
        raise ConfigError(f"{at('adm_predict_xstart')} and {at('adm_predict_v')} are both true: choose one target")
    _validate_diffusion(config, at)
    if config.lr_schedular and config.warmup_linear:
        raise ConfigError(f"{at('lr_schedular')} and {at('warmup_linear')} are both true: choose one schedule")
    positive = ("input_size", "output_size", "batch_size", "train_time_steps", "sample_time_steps", "epochs",
                "evaluate_every", "save_every", "print_every", "unet_inplanes", "unet_residual", "vat_frame_step")
    for name in positive:
        if getattr(config, name) <= 0:
            raise ConfigError(f"{at(name)} must be positive, found {getattr(config, name)}")
    for name in ("num_workers", "save_every_steps", "lr_anneal_steps", "weight_decay", "grad_clip", "unet_dropout",
                 "inout_weight", "diffusion_weight", "lr", "location_weight", "kl_weight", "softargmax_beta",
                 "debug_maps_per_group", "debug_trajectories", "eval_metric_workers"):
        if getattr(config, name) < 0:
            raise ConfigError(f"{at(name)} must be >= 0, found {getattr(config, name)}")
    if config.sample_time_steps > config.train_time_steps:
        raise ConfigError(f"{at('sample_time_steps')} = {config.sample_time_steps} exceeds "
                          f"{at('train_time_steps')} = {config.train_time_steps}")
    if not 0.0 <= config.gaze_point_threshold < 1.0:
        raise ConfigError(f"{at('gaze_point_threshold')} must be a fraction in [0, 1), found {config.gaze_point_threshold}")
    if config.diff_normalization <= 0:
        raise ConfigError(f"{at('diff_normalization')} must be positive, found {config.diff_normalization}")
    if not 0.0 <= config.ema_rate < 1.0:
        raise ConfigError(f"{at('ema_rate')} must be in [0, 1), found {config.ema_rate}")
    _validate_unread(config, at)
    if config.sync_batchnorm and config.device != "cuda":
        raise ConfigError(f"{at('sync_batchnorm')} needs {at('device')} = 'cuda' (SyncBatchNorm has no CPU backend)")
    if config.random_sigma <= 0:
        raise ConfigError(f"{at('random_sigma')} must be positive, found {config.random_sigma}")
    _validate_backbone(config, at)


_TIMM_ONLY = ("timm_model", "head_position", "timm_prefix_tokens", "face_stream", "backbone_pretrained",
              "backbone_weights")

_RESNET_ONLY = ("list_resnet_scene_layers", "list_resnet_face_layers", "resnet_scene_inplanes", "resnet_face_inplanes",
                "adm_attention_module", "head_flag", "depth_flag", "list_resnet_depth_layers", "resnet_depth_inplanes")


def _validate_backbone(config: Config, at) -> None:
    """Checks of the gaze-backbone options (issue 14): options of the timm backbone are refused with the ResNet ones,
    and the feature cache only runs where cached tokens equal what the encoder would compute."""
    if config.gaze_backbone in ("original", "chong", "diffusiongaze_depth"):
        given = [name for name in _TIMM_ONLY if getattr(config, name) != OPTIONS_BY_NAME[name].default]
        if given:
            raise ConfigError(f"{', '.join(at(n) for n in given)} configure gaze_backbone timm, but "
                              f"{at('gaze_backbone')} is {config.gaze_backbone!r}")
    if config.attention_layout and config.gaze_backbone not in ("original", "chong"):
        raise ConfigError(f"{at('attention_layout')} selects the 'chong' backbone, but {at('gaze_backbone')} is "
                          f"{config.gaze_backbone!r}: set one of them")
    if config.depth_flag and config.depth_layout == "diffusiongaze" and \
            config.gaze_backbone not in ("original", "diffusiongaze_depth"):
        raise ConfigError(f"{at('depth_layout')} = 'diffusiongaze' selects the 'diffusiongaze_depth' backbone, but "
                          f"{at('gaze_backbone')} is {config.gaze_backbone!r}: set one of them")
    if config.gaze_backbone == "timm":
        given = [name for name in _RESNET_ONLY if getattr(config, name) != OPTIONS_BY_NAME[name].default]
        if given:
            raise ConfigError(f"{', '.join(at(n) for n in given)} configure the ResNet backbones (original, chong, "
                              f"diffusiongaze_depth), "
                              f"but {at('gaze_backbone')} is 'timm' (its face stream is 'face_stream')")
        if not config.timm_model:
            raise ConfigError(f"{at('gaze_backbone')} is 'timm': set 'timm_model' to a timm model name "
                              "(e.g. vit_base_patch14_reg4_dinov2)")
        if config.head_position == "mask_channel" and config.freeze_scene:
            raise ConfigError(f"{at('head_position')} = 'mask_channel' feeds the head mask through zero-initialised "
                              f"weights of the encoder's first layer, which {at('freeze_scene')} would keep at zero "
                              "(the model would never see the head): use head_position prompt with a frozen encoder")
        if config.backbone_pretrained and config.backbone_weights:
            raise ConfigError(f"{at('backbone_pretrained')} and {at('backbone_weights')} both give the encoder's "
                              "starting weights: choose one")
    if config.feature_cache is not None:
        # A plug-in may cache too (its encode_scene is checked when the cache is built); the ResNet backbones can't.
        needs = {"freeze_scene": True}
        if config.gaze_backbone == "timm":
            needs["head_position"] = "prompt"
        wrong = [f"{at(name)} = {getattr(config, name)!r}" for name, value in needs.items()
                 if getattr(config, name) != value]
        if config.gaze_backbone in ("original", "chong", "diffusiongaze_depth"):
            wrong.insert(0, f"{at('gaze_backbone')} = {config.gaze_backbone!r}")
        if wrong:
            raise ConfigError(f"{at('feature_cache')} caches the frozen scene encoder's tokens, which are the same "
                              f"every epoch only with gaze_backbone timm (or a plug-in with encode_scene), "
                              f"freeze_scene true and head_position prompt (the encoder then sees the RGB image "
                              f"alone); found {', '.join(wrong)}")
        pixel_changing = [name for name in config.train_augmentations if name in ("crop", "colour")]
        if pixel_changing:
            raise ConfigError(f"{at('feature_cache')}: {at('train_augmentations')} includes {pixel_changing}, which "
                              "change the pixels the encoder sees differently every epoch, so cached tokens would be "
                              "wrong; keep only jitter (head box only) and flip (cached per flip), e.g. "
                              "--train_augmentations jitter flip")


# (option, the switch that makes something read it): setting the option away from its default while the switch is off
# is an error, since nothing would read it.
_READ_ONLY_WITH = (("offset_noise_strength", "noise_changer"), ("ema_rate", "ema_on"),
                   ("time_noise", "eval_from_picture"), ("picture_source", "eval_from_picture"))


def _validate_unread(config: Config, at) -> None:
    for name, switch in _READ_ONLY_WITH:
        if config.sources[name].endswith("(stored)"):  # a checkpoint's value, e.g. ema_rate when evaluating the raw
            continue                                   # weights of an EMA run with --ema_on false: not the user's
        if not getattr(config, switch) and getattr(config, name) != config.table.by_name[name].default:
            raise ConfigError(f"{at(name)} = {getattr(config, name)!r} is read only with {at(switch)}, which is off: "
                              f"turn '{switch}' on, or leave '{name}' out")


def _validate_diffusion(config: Config, at) -> None:
    """Checks of the diffusion options (issue 3): each combination that cannot do what it says is an error."""
    from diffusion.gaussian_diffusion import parse_mse_loss_weight_type  # numpy/torch only when validating

    try:
        parse_mse_loss_weight_type(config.mse_loss_weight_type)
    except ValueError as error:
        raise ConfigError(f"{at('mse_loss_weight_type')}: {error}") from None
    vb_only = config.adm and config.adm_use_kl
    if vb_only and config.mse_loss_weight_type != "constant":
        raise ConfigError(f"{at('mse_loss_weight_type')} = {config.mse_loss_weight_type!r} weights the MSE, but "
                          f"{at('adm_use_kl')} trains on the variational bound only (no MSE term)")
    if config.adm_sigma_small and config.adm_learn_sigma:
        raise ConfigError(f"{at('adm_sigma_small')} picks a fixed variance, but {at('adm_learn_sigma')} learns it")
    if config.adm_rescale_learned_sigmas and (not config.adm_learn_sigma or config.adm_use_kl):
        raise ConfigError(f"{at('adm_rescale_learned_sigmas')} scales the VB term of a learned variance in the hybrid "
                          f"loss: it needs {at('adm_learn_sigma')} and not {at('adm_use_kl')}")
    predicts_eps = (not config.adm_predict_xstart and not config.adm_predict_v) if config.adm \
        else config.predict_sthg == "pred_noise"
    if config.fix_snr and predicts_eps:
        raise ConfigError(f"{at('fix_snr')}: zero terminal SNR makes abar = 0 at t = T-1, where an eps prediction "
                          f"cannot give x0; predict x0 or v ('adm_predict_xstart' / 'adm_predict_v', or "
                          f"'predict_sthg' = 'pred_x0')")
    if config.offset_noise_strength < 0:
        raise ConfigError(f"{at('offset_noise_strength')} must be >= 0, found {config.offset_noise_strength}")
    if not 0.0 <= config.ddim_eta <= 1.0:
        raise ConfigError(f"{at('ddim_eta')} must be in [0, 1], found {config.ddim_eta}")
    ddim = config.sampler == "ddim" or (config.sampler == "auto" and config.sample_time_steps < config.train_time_steps)
    if config.ddim_eta != 0 and not ddim:
        raise ConfigError(f"{at('ddim_eta')} = {config.ddim_eta} is DDIM's noise scale, but {at('sampler')} = "
                          f"{config.sampler!r} with {at('sample_time_steps')} = {config.sample_time_steps} does not "
                          f"sample with DDIM")
    if config.adm_sigma_small and not (config.adm_use_kl or config.sampler == "ddpm" or
                                       (config.sampler == "auto" and not ddim)):
        raise ConfigError(f"{at('adm_sigma_small')}: the fixed variance is read only by ancestral (DDPM) sampling and "
                          f"the VB loss, but {at('sampler')} = {config.sampler!r} with {at('sample_time_steps')} = "
                          f"{config.sample_time_steps} and {at('adm_use_kl')} is false")
    if config.compat_original_ddim_step and not ddim:
        raise ConfigError(f"{at('compat_original_ddim_step')} changes the DDIM step, but {at('sampler')} = "
                          f"{config.sampler!r} with {at('sample_time_steps')} = {config.sample_time_steps} does not "
                          f"sample with DDIM")
    if config.compat_original_std_state and not config.norm_std_flag:
        raise ConfigError(f"{at('compat_original_std_state')} reproduces a behaviour of {at('norm_std_flag')}, "
                          f"which is off")
    if config.sample_k < 1:
        raise ConfigError(f"{at('sample_k')} must be >= 1, found {config.sample_k}")
    if config.eval_from_picture and not 0 <= config.time_noise < config.train_time_steps:
        raise ConfigError(f"{at('time_noise')} must be a training timestep in [0, {config.train_time_steps}) "
                          f"({at('train_time_steps')}), found {config.time_noise}")


# --- command line ---------------------------------------------------------------------------------------------------


def build_arg_parser(table: OptionTable | None = None) -> argparse.ArgumentParser:
    """One flag per option (YAML-only options excepted), grouped as in the table; defaults are not set here so that
    only flags actually given override the YAML files."""
    table = _table(table)
    # allow_abbrev=False: `--epoch 7` is an unknown option, not silently `--epochs`.
    parser = argparse.ArgumentParser(prog=table.prog, description=table.description,
                                     argument_default=argparse.SUPPRESS, allow_abbrev=False)
    files = parser.add_argument_group("Configuration files")
    for flag, help_text in table.yaml_flags:
        files.add_argument(f"--{flag}", help=help_text)
    files.add_argument("--print_config", action="store_true", help="print the resolved configuration as YAML and exit")
    groups = {group: parser.add_argument_group(group) for group in table.groups}
    for option in table.options:
        if option.kind == RULES:
            continue
        help_text = f"{option.help} [default: {option.default}]".replace("%", "%%")
        group = groups[option.group]
        if option.kind == BOOL:  # a bare switch as in the original (`--x_loss`), or `--x_loss false`
            group.add_argument(f"--{option.name}", nargs="?", const="true", metavar="BOOL", help=help_text)
        elif option.kind == INT_LIST:
            group.add_argument(f"--{option.name}", nargs="+", metavar="N", help=help_text)
        elif option.kind == STR_LIST:  # bare flag = empty list
            group.add_argument(f"--{option.name}", nargs="*", metavar="ITEM", help=help_text)
        else:
            group.add_argument(f"--{option.name}", choices=option.choices, metavar=option.kind.upper()
                               if option.choices is None else None, help=help_text)
    for option in _legacy(table).values():  # old spellings, translated where they enter
        help_text = f"{option.help} [default: {option.default}]".replace("%", "%%")
        if option.kind == BOOL:
            groups[option.group].add_argument(f"--{option.name}", nargs="?", const="true", metavar="BOOL",
                                              help=help_text)
        else:
            groups[option.group].add_argument(f"--{option.name}", choices=option.choices, help=help_text)
    for flag, name, bare, help_text in table.switches:
        groups[table.by_name[name].group].add_argument(
            f"--{flag}", dest=name, nargs="?", const=bare, type=_bool_argument, metavar="BOOL", help=help_text)
    return parser


def _bool_argument(text: str) -> bool:
    if text.strip().lower() not in _TRUE | _FALSE:
        raise argparse.ArgumentTypeError(f"expected true or false, found {text!r}")
    return text.strip().lower() in _TRUE


def parse_command_line(argv: list[str] | None = None, table: OptionTable | None = None) -> tuple[Config, bool]:
    """Parse the program's flags (`main.py` by default); returns (config, print_config_requested)."""
    table = _table(table)
    parser = build_arg_parser(table)
    known, unknown = parser.parse_known_args(argv)
    for token in unknown:
        if token.startswith("--"):
            name = token[2:].split("=")[0]
            if name.startswith("no-") and name[3:] in table.by_name and table.by_name[name[3:]].kind == BOOL:
                parser.error(f"unknown option --{name}: a switch is turned off with --{name[3:]} false")
            parser.error(f"unknown option --{name}{_suggestion(name, table)}")
    if unknown:
        parser.error(f"unexpected arguments: {' '.join(unknown)}")
    args = vars(known)
    yaml_paths = [args.pop(flag) for flag, _ in table.yaml_flags if flag in args]
    print_config = args.pop("print_config", False)
    return load_config(yaml_paths, args, table), print_config


GAZE_FOLLOWING = OptionTable(
    options=OPTIONS,
    groups=GROUPS,
    prog="main.py",
    description="Gaze following with diffusion models: train, resume and evaluate. "
                "Precedence: declared defaults < YAML files < flags.",
    yaml_flags=(("yaml_diffusion", "YAML file (flat, or keys grouped under any section names)"),
                ("yaml_gaze", "second YAML file; a key set differently in both files is an error")),
    validate=validate,
    switches=(("is_subsample_test_set", "test_subsample_fraction", False,
               "The original's switch: given bare, evaluate on the full test set (as the original's store_false); "
               "`--is_subsample_test_set true` = its 10 %% subsample (test_subsample_fraction 0.1)."),),
    original_layout=DIFFUSIONGAZE_LAYOUT,
)
