"""The rules an option declaration carries (engine.options, gaze360.options), and the one function that applies them.

A declaration says, beside its type and default: its `bounds` (numbers, and each item of an integer list), the
conditions it `needs` when it is on or set (a combination that cannot run), the condition it is `read_with` (set
away from its default while nothing reads it, it would be parsed and ignored), and whether it may differ when stored
weights are evaluated (`evaluation`) or when a run resumes (`resume`, `resume_unless`). `check_rules(config)` turns
every broken rule into a ConfigError naming the options involved and where each value came from; the configuration
checks, `--help`, the options reference (docs/options.md) and engine.stored_config's evaluation / resume tables all
read these fields.

Conditions are small objects with a text for the messages: `On("noise_changer")` (a switch is on),
`Given("eval_weights")` (set), `Is("sampler", "ddim", "ddpm")` (one of these values), `Not`, `All`, `AnyOf`, and
`Check(text, names, test)` for a computed relation.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable


class ConfigError(ValueError):
    """A configuration value or file is wrong; the message names the file, line and key."""


# --- bounds ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bounds:
    """An interval for a number (or each item of a list): `low` / `high` are numbers or the name of another option
    (`Bounds(1, "train_time_steps")`: at most T); an open end excludes the bound itself."""

    low: float | str | None = None
    high: float | str | None = None
    low_open: bool = False
    high_open: bool = False

    def names(self) -> tuple[str, ...]:
        return tuple(end for end in (self.low, self.high) if isinstance(end, str))

    def contains(self, value: float, config) -> bool:
        low, high = (getattr(config, end) if isinstance(end, str) else end for end in (self.low, self.high))
        if low is not None and (value < low or (self.low_open and value == low)):
            return False
        return high is None or not (value > high or (self.high_open and value == high))

    def text(self) -> str:
        if self.high is None and self.low == 0:
            return "positive" if self.low_open else ">= 0"
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {self.high}"
        return f"in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"


POSITIVE = Bounds(0, low_open=True)
NON_NEGATIVE = Bounds(0)
UNIT_INTERVAL = Bounds(0, 1)
BELOW_ONE = Bounds(0, 1, high_open=True)  # [0, 1): a decay rate, a dropout, a quantile fraction
SEED = Bounds(0, 2**32 - 1)  # numpy's RandomState takes seeds in [0, 2^32 - 1]


# --- conditions -----------------------------------------------------------------------------------------------------


def _quote(value: Any) -> str:
    return repr(value)


class Condition:
    """Something true or false of a configuration, with a text for the messages and the options it reads."""

    names: tuple[str, ...] = ()

    def holds(self, config) -> bool:
        raise NotImplementedError

    def text(self) -> str:
        raise NotImplementedError


class Is(Condition):
    """The option's value is one of `values`."""

    def __init__(self, name: str, *values: Any):
        if not values:
            raise TypeError("Is(name, *values) needs at least one value; a switch is On(name), a set value Given(name)")
        self.names, self.values = (name,), values

    def holds(self, config) -> bool:
        return getattr(config, self.names[0]) in self.values

    def text(self, negated: bool = False) -> str:
        if len(self.values) == 1:
            return f"'{self.names[0]}' {'!=' if negated else '='} {_quote(self.values[0])}"
        return f"'{self.names[0]}' {'not ' if negated else ''}one of {', '.join(map(_quote, self.values))}"


class On(Condition):
    """A switch (a boolean option) is on."""

    def __init__(self, name: str):
        self.names = (name,)

    def holds(self, config) -> bool:
        return getattr(config, self.names[0]) is True

    def text(self, negated: bool = False) -> str:
        return f"'{self.names[0]}' {'off' if negated else 'on'}"


class Given(Condition):
    """An option that may be unset (None, an empty list or string) is set."""

    def __init__(self, name: str):
        self.names = (name,)

    def holds(self, config) -> bool:
        return getattr(config, self.names[0]) not in (None, "", [])

    def text(self, negated: bool = False) -> str:
        return f"'{self.names[0]}' {'unset' if negated else 'set'}"


class Not(Condition):
    def __init__(self, condition: Condition):
        self.condition, self.names = condition, condition.names

    def holds(self, config) -> bool:
        return not self.condition.holds(config)

    def text(self) -> str:
        if isinstance(self.condition, (Is, On, Given)):
            return self.condition.text(negated=True)
        return f"not ({self.condition.text()})"


class _Combined(Condition):
    """Several conditions joined by `combine` (all / any), written with `word` between them."""

    combine, word = staticmethod(all), "and"

    def __init__(self, *conditions: Condition):
        self.conditions = conditions
        self.names = tuple(dict.fromkeys(name for c in conditions for name in c.names))

    def holds(self, config) -> bool:
        return type(self).combine(c.holds(config) for c in self.conditions)

    def text(self) -> str:
        return f" {self.word} ".join(c.text() for c in self.conditions)


class All(_Combined):
    combine, word = staticmethod(all), "and"


class AnyOf(_Combined):
    combine, word = staticmethod(any), "or"


class Check(Condition):
    """A computed relation: `test(config)` -> bool, described by `text`, reading the options `names`."""

    def __init__(self, text: str, names: Iterable[str], test: Callable[[Any], bool]):
        self._text, self.names, self.test = text, tuple(names), test

    def holds(self, config) -> bool:
        return bool(self.test(config))

    def text(self) -> str:
        return self._text


# --- rules ----------------------------------------------------------------------------------------------------------

ALWAYS = "always"


@dataclass(frozen=True)
class Rule:
    """`condition` must hold when the option takes one of the values `when` (default: when it is on, or set away from
    its default); `why` says what the option does that needs it (appended to the message). warning: the combination
    is legitimate but suspicious, so it is said once on stderr instead of refused."""

    condition: Condition
    why: str = ""
    when: tuple | str | None = None
    warning: bool = False

    def applies(self, option, value) -> bool:
        if self.when == ALWAYS:
            return True
        if self.when is not None:
            return value in self.when
        return is_active(option, value)


@dataclass(frozen=True)
class Unless:
    """A resumable option that may not change while `condition` holds (`why` says what it would break)."""

    condition: Condition
    why: str


def is_set(option, value) -> bool:
    """The option is away from its default (an unset value, None or an empty list, counts as the default)."""
    if value in (None, []) and option.kind != "bool":
        return False
    return value != option.default


def is_active(option, value) -> bool:
    """A switch that is on, or any other option set away from its default: when its `needs` apply."""
    return value is True if option.kind == "bool" else is_set(option, value)


def rule_list(rules) -> tuple[Rule, ...]:
    """A declaration's `needs`: one Rule or Condition, or a tuple of them."""
    if rules is None:
        return ()
    rules = rules if isinstance(rules, (tuple, list)) else (rules,)
    return tuple(rule if isinstance(rule, Rule) else Rule(rule) for rule in rules)


def as_rule(rule) -> Rule | None:
    return rule if rule is None or isinstance(rule, Rule) else Rule(rule)


# --- checking -------------------------------------------------------------------------------------------------------


def _at(config, name: str) -> str:
    return f"'{name}' ({config.sources[name]})"


def _facts(config, names: Iterable[str]) -> str:
    return ", ".join(f"{_at(config, name)} = {getattr(config, name)!r}" for name in names)


def check_rules(config, options) -> None:
    """Apply every declared rule of `options` to `config` (declaration order; the first broken rule is raised)."""
    for option in options:
        value = getattr(config, option.name)
        if callable(option.choices) and value is not None:  # a registry's names, as registered now
            _check_registered(option, value, config)
        static_bounds = option.bounds is not None and not option.bounds.names()
        if static_bounds:  # a value outside a fixed interval is wrong whether or not anything reads it
            _check_bounds(option, value, config)
        read_with = as_rule(option.read_with)
        if read_with is not None and not read_with.condition.holds(config):
            # A stored value (a checkpoint's, e.g. ema_rate when evaluating an EMA run's raw weights) is not the
            # user's choice: only values given in a file or a flag are refused.
            if is_set(option, value) and not config.sources[option.name].endswith("(stored)"):
                raise ConfigError(
                    f"{_at(config, option.name)} = {value!r} is read only with {read_with.condition.text()}, but "
                    f"{_facts(config, read_with.condition.names)}: "
                    + (f"{read_with.why}; " if read_with.why else "") + f"leave '{option.name}' out")
            continue  # an option nothing reads needs no other check
        if option.bounds is not None and not static_bounds:  # bounds from other options: only where it is read
            _check_bounds(option, value, config)
        if option.check is not None and value is not None:
            try:
                option.check(value)
            except ValueError as error:
                raise ConfigError(f"{_at(config, option.name)}: {error}") from None
        for rule in rule_list(option.needs):
            if rule.applies(option, value) and not rule.condition.holds(config):
                if rule.warning:
                    warn_once(f"{_at(config, option.name)} = {value!r}: {rule.why}")
                    continue
                raise ConfigError(f"{_at(config, option.name)} = {value!r} needs {rule.condition.text()}, but "
                                  f"{_facts(config, rule.condition.names)}" + (f": {rule.why}" if rule.why else ""))


_WARNED: set[str] = set()


def warn_once(text: str) -> None:
    """One line on stderr, once per process (a configuration is checked again when a checkpoint's is applied)."""
    if text not in _WARNED:
        _WARNED.add(text)
        print(f"warning: {text}", file=sys.stderr)


def _check_registered(option, value, config) -> None:
    names = option.allowed()
    unknown = [item for item in (value if isinstance(value, list) else [value]) if item not in names]
    if unknown:
        raise ConfigError(f"{_at(config, option.name)}: expected one of {list(names)}, found "
                          f"{value if isinstance(value, list) else value!r} (names registered now)")


def _check_bounds(option, value, config) -> None:
    if value is None:
        return
    items = value if isinstance(value, list) else [value]
    outside = [item for item in items if not option.bounds.contains(item, config)]
    if outside:
        names = option.bounds.names()
        where = f" ({_facts(config, names)})" if names else ""
        found = outside if isinstance(value, list) else value
        raise ConfigError(f"{_at(config, option.name)} must be {option.bounds.text()}{where}"
                          f"{', every item' if isinstance(value, list) else ''}, found {found!r}")


def resume_fixed(option, config) -> str | None:
    """Why `option` may not change on this resume although it is resumable (its `resume_unless` holds), else None."""
    unless = option.resume_unless
    if unless is None or not unless.condition.holds(config):
        return None
    return f"{_facts(config, unless.condition.names)}: {unless.why}"
