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
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from engine import old_spellings
from engine.option_rules import ConfigError, check_rules
from engine.options import (
    BOOL, FLOAT, FRACTION, GROUPS, INT, INT_LIST, OPTIONS, RULES, STR, STR_LIST, Option, OptionTable,
)
from engine.original_layout import DIFFUSIONGAZE_LAYOUT

__all__ = ["Config", "ConfigError", "GAZE_FOLLOWING", "build_arg_parser", "check_buildable", "convert_value",
           "load_config", "parse_command_line", "read_yaml_options", "validate"]


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
            old = {o.name: o for o in self.table.old_spellings}.get(name)
            if old is not None:
                raise AttributeError(f"{name!r} is the original's spelling of {old.replaced_by!r} (engine."
                                     f"old_spellings): read config.{old.replaced_by}") from None
            raise AttributeError(f"no option named {name!r}{_suggestion(name, self.table)}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Config is read-only; use config.replace(name=value)")

    def replace(self, **changes: Any) -> "Config":
        """A copy with some options changed (values are converted like flags; the original's spellings are
        translated)."""
        values, sources = dict(self._values), dict(self.sources)
        for name, value in changes.items():
            if name in _loss_switches(self.table):
                raise ConfigError(f"replace(): '{name}' is an old switch of 'extra_loss' (read where files and flags "
                                  "enter); replace extra_loss itself (docs/losses.md)")
            option = _option(name, "replace()", self.table)
            values[option.name] = convert_value(option, value, "replace()")
            sources[option.name] = "replace()"
        if self.table.translate is not None:
            self.table.translate(values, sources)
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
        result = expand_path(str(value), option, where) if option.path else str(value)
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
        if option.path:
            result = [expand_path(item, option, where) for item in result]
        choices = None if callable(option.choices) else option.choices  # a registry's: checked by validate()
        if choices is not None:
            unknown = [item for item in result if item not in choices]
            if unknown:
                raise ConfigError(f"{where}: key '{option.name}': expected items from {list(choices)}, "
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
    choices = None if callable(option.choices) else option.choices  # a registry's names: checked by validate(),
    if choices is not None and result not in choices:                 # once the plug-ins that register them run
        raise ConfigError(f"{where}: key '{option.name}': expected one of {list(choices)}, found {result!r}")
    return result


_VARIABLE = re.compile(r"\$(\w+|\{[^}]*\})")


def expand_path(text: str, option: Option, where: str) -> str:
    """A path option's value with `~` (the home folder) and `$NAME` / `${NAME}` (environment variables) expanded, so
    that `output_dir: ~/runs` is the folder in the home directory, never a folder named `~`. An unknown user or an
    unset variable is an error naming the key."""
    expanded = os.path.expandvars(os.path.expanduser(text))
    unset = _VARIABLE.search(expanded)
    if unset:
        raise ConfigError(f"{where}: key '{option.name}': the environment variable {unset.group(0)} in {text!r} is "
                          "not set")
    if expanded.startswith("~"):
        raise ConfigError(f"{where}: key '{option.name}': cannot expand {text.split('/')[0]!r} in {text!r} (no such "
                          "user): write the folder out")
    return expanded


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
    close = difflib.get_close_matches(name, list(table.readable) + list(table.aliases), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _loss_switches(table: OptionTable | None = None) -> set[str]:
    """The old switches of `extra_loss` (engine.options.LEGACY_OPTIONS): their meaning depends on the files' layout,
    so the table's compatibility hook (engine.original_layout) reads them, before the other old spellings."""
    return {option.name for option in getattr(_table(table).original_layout, "legacy_options", ())}


def _option(name: str, where: str, table: OptionTable | None = None) -> Option:
    """The declared option (or the original's spelling, engine.old_spellings) that the key `name` names."""
    table = _table(table)
    readable = table.readable
    canonical = table.aliases.get(name, name)
    if canonical not in readable:
        raise ConfigError(f"{where}: unknown key '{name}'{_suggestion(name, table)}")
    return readable[canonical]


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
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"configuration file not found: {path}" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read: {error.strerror or error}") from None
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark is fine
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[error.start]:02x}): save the file as UTF-8") \
            from None
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as error:
        raise ConfigError(_yaml_error(path, error, "not valid YAML")) from None
    finally:
        loader.dispose()
    found: dict[str, tuple[Any, str]] = {}
    if root is None:  # an empty file (or only comments) would silently mean "all defaults"
        raise ConfigError(f"{path}: the file is empty (no options): give the YAML file with the run's options, or "
                          "leave the flag out to use the defaults")
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{path}:{root.start_mark.line + 1}: expected a mapping of options at the top level")
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


def _yaml_error(path: Path, error: yaml.YAMLError, what: str) -> str:
    """One line: the file, the line of the problem and PyYAML's problem text."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = "; ".join(part for part in (getattr(error, "context", None), getattr(error, "problem", None)) if part)
    problem = problem or str(error).splitlines()[0]
    return f"{path}{f':{mark.line + 1}' if mark is not None else ''}: {what}: {problem}"


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _construct(constructor: yaml.SafeLoader, node: yaml.Node, path: Path) -> Any:
    """The plain value of `node`; a tag the safe loader does not construct (e.g. `!!python/object`) is an error."""
    try:
        return constructor.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError as error:
        mark = error.problem_mark or node.start_mark
        raise ConfigError(f"{path}:{mark.line + 1}: the YAML tag {_tag_of(error)} is not read: option files hold "
                          "plain values (numbers, strings, booleans, lists, null)") from None
    except yaml.YAMLError as error:
        raise ConfigError(_yaml_error(path, error, "not valid YAML")) from None


def _tag_of(error: yaml.constructor.ConstructorError) -> str:
    found = re.search(r"tag '([^']*)'", str(error.problem))
    return found.group(1).replace("tag:yaml.org,2002:", "!!") if found else "(unknown)"


def _walk_mapping(node: yaml.MappingNode, path: Path, found: dict[str, tuple[Any, str]], table: OptionTable,
                  original=None) -> None:
    constructor = yaml.SafeLoader("")
    readable, aliases = table.readable, table.aliases
    for key_node, value_node in node.value:
        where = f"{path}:{key_node.start_mark.line + 1}"
        if key_node.tag == _MERGE_TAG:
            raise ConfigError(f"{where}: YAML merge keys (<<) are not read: write the options out (anchors and "
                              "aliases of single values are fine), or put the shared ones in the other YAML file")
        key = _construct(constructor, key_node, path)
        is_option = isinstance(key, str) and aliases.get(key, key) in readable
        if not is_option and isinstance(value_node, yaml.MappingNode):
            _walk_mapping(value_node, path, found, table, original)  # a section such as `Dataset:`
            continue
        option = _option(str(key), where, table)
        value = _construct(constructor, value_node, path)
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
    legacy_names = _loss_switches(table)
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
    if table.translate is not None:  # the original's spellings (engine.old_spellings) become the current options
        table.translate(values, sources)
    config = Config(values, sources, table)
    table.validate(config)
    return config


def validate(config: Config) -> None:
    """The gaze-following checks: every rule the declarations carry (engine.option_rules). Whether the model these
    options describe can be built is `check_buildable`, made where that model is the one to build (a fresh training
    run, a checkpoint's stored configuration), not here: a resume or an evaluation may leave the model's options to
    the checkpoint."""

    def at(name: str) -> str:
        return f"'{name}' ({config.sources[name]})"

    _validate_registered(config, at)
    check_rules(config, config.table.options)
    _validate_formulation(config, at)


def _build_gaze_following_model(config: Config) -> None:
    if config.backbone_plugins:  # plug-ins are imported when the model is built, not when a configuration is read
        return
    from models.build import get_model  # torch only when checking

    get_model(config, init_backbone_weights=False)


def _validate_registered(config: Config, at) -> None:
    """Options whose choices come from a registry (engine.options.registered): a name not registered yet is looked
    for again after importing the modules of `backbone_plugins`, which may register it."""
    registry_options = [option for option in config.table.options if callable(option.choices)]
    unknown = [option for option in registry_options if getattr(config, option.name) not in option.choices()]
    if not unknown:
        return
    if config.backbone_plugins:
        from models.backbones import import_backbone_plugins

        try:
            import_backbone_plugins(config.backbone_plugins)
        except ModuleNotFoundError as error:
            raise ConfigError(f"{at(unknown[0].name)} = {getattr(config, unknown[0].name)!r} is not registered, "
                              f"and {at('backbone_plugins')} cannot be imported: {error}") from None
    for option in unknown:
        choices = option.choices()
        if getattr(config, option.name) not in choices:
            plugins = f"; backbone_plugins imported: {config.backbone_plugins}" if config.backbone_plugins else \
                " (a plug-in module of backbone_plugins may register more)"
            raise ConfigError(f"{at(option.name)}: expected one of {list(choices)}, found "
                              f"{getattr(config, option.name)!r}{plugins}")


def _validate_formulation(config: Config, at) -> None:
    """The selected formulation's own checks (formulations/): e.g. the samplers it runs, what it needs of the
    process; options only another decoder reads."""
    import formulations  # torch only when validating

    sources = config.sources
    changed = tuple(option.name for option in config.table.options  # set by a file or flag, away from the default
                    if getattr(config, option.name) != option.default and sources[option.name] != "default"
                    and not sources[option.name].endswith("(stored)"))
    try:
        formulations.check_config(config, at, changed)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def check_buildable(config: Config) -> None:
    """Build the table's model (`OptionTable.build`) on PyTorch's meta device (no memory, no weight values, about
    0.1 s for the paper-size model), so that every check the model's own code makes (UNet levels and output size,
    backbone channels and layouts, a face stream to freeze, a registered backbone name) is a configuration error,
    naming the options and where they were set, before a run folder is touched or any data is read."""
    if config.table.build is None:
        return
    import torch  # imported here: reading a configuration for --help or --print_config needs no torch

    try:
        with torch.device("meta"):
            config.table.build(config)
    except (ValueError, KeyError) as error:
        text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        raise ConfigError(f"the model cannot be built from this configuration: {text}{_sources_named(text, config)}") \
            from None


def _sources_named(text: str, config: Config) -> str:
    """" (name: where it was set, ...)" for the options a model error names that were not left at their default."""
    named = [name for name in config.table.by_name if re.search(rf"\b{re.escape(name)}\b", text)
             and config.sources[name] != "default"]
    return f" ({'; '.join(f'{name}: {config.sources[name]}' for name in named)})" if named else ""


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
        _add_flag(groups[option.group], option)
    if table.old_spellings:
        old = parser.add_argument_group("The original's spellings (translated into the options above; "
                                        "docs/configuration.md)")
        for option in table.old_spellings:
            _add_flag(old, option)
    for flag, name, bare, help_text in table.switches:
        groups[table.by_name[name].group].add_argument(
            f"--{flag}", dest=name, nargs="?", const=bare, type=_bool_argument, metavar="BOOL", help=help_text)
    return parser


def _add_flag(group, option: Option) -> None:
    """The flag of one option; its help ends with the default and the declared rules (engine.options.rules_text)."""
    from engine.options import rules_text

    if option.kind == RULES:  # YAML only
        return
    rules = rules_text(option)
    help_text = (f"{option.help} [default: {option.default}{'; ' + rules if rules else ''}]").replace("%", "%%")
    if option.kind == BOOL:  # a bare switch as in the original (`--x_loss`), or `--x_loss false`
        group.add_argument(f"--{option.name}", nargs="?", const="true", metavar="BOOL", help=help_text)
    elif option.kind == INT_LIST:
        group.add_argument(f"--{option.name}", nargs="+", metavar="N", help=help_text)
    elif option.kind == STR_LIST:  # bare flag = empty list
        group.add_argument(f"--{option.name}", nargs="*", metavar="PATH" if option.path else "ITEM", help=help_text)
    else:
        choices = None if callable(option.choices) else option.choices  # a registry's: checked by validate()
        if choices is not None and not all(isinstance(choice, str) for choice in choices):
            choices = None  # argparse compares the flag's text; convert_value checks numbers after conversion
        metavar = "NAME" if callable(option.choices) else None if choices is not None else (
            "PATH" if option.path else option.kind.upper())
        group.add_argument(f"--{option.name}", choices=choices, metavar=metavar, help=help_text)


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
            if name.startswith("no-") and name[3:] in table.readable and table.readable[name[3:]].kind == BOOL:
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
    old_spellings=old_spellings.OLD_SPELLINGS,
    translate=old_spellings.translate,
    build=_build_gaze_following_model,
)
