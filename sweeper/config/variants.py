"""How a task varies one parameter: :class:`TaskParameter` (a style and its rules) and the
:class:`SearchRange` a sampler draws from."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sweeper.config.fields import SCALAR_TYPES, Fields, is_number, label_of, plain
from sweeper.config.loader import YamlMap
from sweeper.config.problems import Problems, quoted
from sweeper.errors import ConfigError

STYLES = ("single", "multiple", "linear", "logspace", "random")
DISTRIBUTIONS = ("uniform", "loguniform")
#: A variant parameter may not expand to more values than this.
MAX_VALUES = 10_000

_RULE_KEYS = (
    "value",
    "items",
    "start",
    "end",
    "step",
    "count",
    "base",
    "min",
    "max",
    "distribution",
    "seed",
    "integerify",
    "numberify",
)
#: Which rules each style reads (others are accepted but have no effect).
_STYLE_RULES: dict[str, tuple[str, ...]] = {
    "single": ("value",),
    "multiple": ("items",),
    "linear": ("start", "end", "step", "integerify", "numberify"),
    "logspace": ("start", "end", "min", "max", "count", "base", "integerify", "numberify"),
    "random": ("min", "max", "count", "distribution", "seed", "integerify", "numberify"),
}
_DISTRIBUTION_ALIASES = {"log-uniform": "loguniform", "log_uniform": "loguniform"}


@dataclass(frozen=True)
class SearchRange:
    """A numeric range a sampler draws from: ``low``..``high`` on a linear or log scale."""

    low: float
    high: float
    distribution: str = "uniform"
    integer: bool = False

    @property
    def log(self) -> bool:
        """True when values should be drawn uniformly in log space."""
        return self.distribution == "loguniform"


@dataclass(frozen=True, kw_only=True)
class TaskParameter:
    """How a task varies one parameter: a ``style`` and its ``rules``.

    * ``single``: ``value``;
    * ``multiple``: ``items``;
    * ``linear``: ``start`` to ``end`` inclusive, in steps of ``step``;
    * ``logspace``: ``count`` values ``base ** x`` for x evenly spaced from ``start`` to
      ``end`` (``min``/``max`` are read as ``start``/``end``; ``base`` defaults to 10);
    * ``random``: ``count`` values drawn between ``min`` and ``max`` from ``distribution``
      (``uniform``, the default, or ``loguniform``), reproducibly when ``seed`` is set.

    ``integerify`` rounds the numbers of the linear, logspace and random styles to integers.
    """

    name: str
    style: str
    rules: Mapping[str, Any]
    line: int | None = field(default=None, compare=False, repr=False)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TaskParameter):
            return NotImplemented
        return (self.name, self.style, dict(self.rules)) == (
            other.name,
            other.style,
            dict(other.rules),
        )

    def __hash__(self) -> int:
        return hash((self.name, self.style))

    @classmethod
    def parse(cls, data: YamlMap, problems: Problems) -> TaskParameter | None:
        """Parse one item of a task's ``parameters``."""
        label = label_of(data)
        f = Fields(
            data, problems, prefix=f"task parameter {label}: ", allowed=("name", "style", "rules")
        )
        name = f.name()
        style = None
        if f.require("style"):
            style = f.choice("style", STYLES, "")
            style = style or None
        raw_rules = f.mapping("rules")
        if raw_rules is None:
            f.require("rules")
        if name is None or style is None or raw_rules is None:
            return None
        prefix = f"task parameter {label}: rules: "
        _check_rule_types(Fields(raw_rules, problems, prefix=prefix, allowed=_RULE_KEYS))
        # Valohai checks only the rules' types; what a style needs is sweeper's to run it.
        f = Fields(data, problems.blocking(), prefix=f.prefix, allowed=tuple(data))
        ok = _check_rules(
            Fields(raw_rules, problems.blocking(), prefix=prefix, allowed=tuple(raw_rules)), style
        )
        if not ok:
            return None
        parameter = cls(
            name=name, style=style, rules=MappingProxyType(plain(raw_rules)), line=f.line
        )
        if style == "random" and raw_rules.get("count") is None:
            return parameter  # a Bayesian task draws its own values; other tasks need a count
        try:
            count = parameter.value_count()
        except (ConfigError, ValueError, OverflowError, ZeroDivisionError) as exc:
            f.error("rules", str(exc))
            return None
        if count > MAX_VALUES:
            f.error("rules", f"rules expand to {count} values; at most {MAX_VALUES} are allowed")
            return None
        return parameter

    # --- values --------------------------------------------------------------------------

    def _number(self, *keys: str, default: float | None = None) -> float:
        for key in keys:
            value = self.rules.get(key)
            if value is not None:
                return float(value)
        if default is None:
            raise ConfigError(f"task parameter {quoted(self.name)}: rules need {' or '.join(keys)}")
        return default

    def _integerify(self, values: list[float]) -> list[Any]:
        if self.rules.get("integerify"):
            return [int(round(v)) for v in values]
        return values

    def value_count(self) -> int:
        """How many values :meth:`values` gives (cheap: nothing is generated)."""
        if self.style == "single":
            return 1
        if self.style == "multiple":
            return len(self.rules.get("items") or ())
        if self.style == "linear":
            start, end, step = self._number("start"), self._number("end"), self._number("step")
            return (
                int(math.floor((end - start) / step + 1e-9)) + 1 if (end - start) * step >= 0 else 0
            )
        return int(self._number("count"))

    def values(self) -> list[Any]:
        """Every value this parameter takes in the task, in order (random: drawn with ``seed``)."""
        if self.style == "single":
            return [self.rules.get("value")]
        if self.style == "multiple":
            return list(self.rules.get("items") or ())
        if self.style == "linear":
            start, step = self._number("start"), self._number("step")
            out = [start + i * step for i in range(self.value_count())]
            if all(isinstance(self.rules.get(k), int) for k in ("start", "end", "step")):
                return [int(round(v)) for v in out]
            return self._integerify([round(v, 12) for v in out])
        if self.style == "logspace":
            start, end = self._number("start", "min"), self._number("end", "max")
            count, base = self.value_count(), self._number("base", default=10.0)
            if count == 1:
                return self._integerify([base**start])
            exponents = [start + (end - start) * i / (count - 1) for i in range(count)]
            return self._integerify([base**x for x in exponents])
        return self.sample(self.value_count(), seed=self.rules.get("seed"))

    def sample(self, count: int, *, seed: int | float | None = None) -> list[Any]:
        """Draw ``count`` values from this parameter's range (the random style's rule)."""
        search = self.search_range()
        rng = random.Random(seed)
        if search.log:
            low, high = math.log(search.low), math.log(search.high)
            drawn = [math.exp(rng.uniform(low, high)) for _ in range(count)]
        else:
            drawn = [rng.uniform(search.low, search.high) for _ in range(count)]
        return self._integerify(drawn)

    @property
    def distribution(self) -> str:
        """The random style's distribution: ``uniform`` (default) or ``loguniform``."""
        text = str(self.rules.get("distribution") or "uniform").strip().lower()
        return _DISTRIBUTION_ALIASES.get(text, text)

    def search_range(self) -> SearchRange:
        """The range to sample from, for samplers (Bayesian, random) that draw their own values.

        Random style: ``min``..``max`` with its distribution. Linear: ``start``..``end``,
        uniform. Logspace: ``base**start``..``base**end``, log-uniform. Other styles have no
        range (:class:`ConfigError`).
        """
        integer = bool(self.rules.get("integerify"))
        if self.style == "random":
            low, high = self._number("min"), self._number("max")
            return SearchRange(low, high, self.distribution, integer)
        if self.style == "linear":
            low, high = sorted((self._number("start"), self._number("end")))
            integer = integer or all(
                isinstance(self.rules.get(k), int) for k in ("start", "end", "step")
            )
            return SearchRange(low, high, "uniform", integer)
        if self.style == "logspace":
            base = self._number("base", default=10.0)
            low, high = sorted(
                (base ** self._number("start", "min"), base ** self._number("end", "max"))
            )
            return SearchRange(low, high, "loguniform", integer)
        raise ConfigError(f"task parameter {quoted(self.name)}: style {self.style} has no range")

    def serialize(self) -> dict[str, Any]:
        """This variant parameter as valohai.yaml data."""
        return {"name": self.name, "style": self.style, "rules": dict(self.rules)}


#: Rules Valohai's schema types as numbers (``value`` included: a single value is a number).
_NUMBER_RULES = ("start", "end", "step", "count", "base", "min", "max", "seed", "value")


def _check_rule_types(rules: Fields) -> None:
    """Report rules of the wrong type, as Valohai's schema does."""
    for key in _NUMBER_RULES:
        rules.number(key)
    for key in ("integerify", "numberify"):
        rules.boolean(key, False)
    rules.string("distribution")
    items = rules.sequence("items")
    for index, item in enumerate(items or ()):
        if items is not None and not isinstance(item, SCALAR_TYPES):
            rules.problems.error(
                items.line_of(index),
                f"{rules.prefix}items: item {index + 1} must be a number, a string or true/false",
            )


def _check_rules(rules: Fields, style: str) -> bool:
    """Check the rules a style needs; report problems and return whether values can be made."""
    for key in rules.data:
        if key in _RULE_KEYS and key not in _STYLE_RULES[style]:
            rules.warning(key, f"{key} has no effect with style {style}")
    data = rules.data
    # A rule of the wrong type was reported as an error by the caller; no value is compared.
    typed = all(data.get(key) is None or is_number(data[key]) for key in _NUMBER_RULES)
    return _STYLE_CHECKS[style](rules, typed)


def _check_single(rules: Fields, ok: bool) -> bool:
    if "value" not in rules.data:
        rules.error(None, 'style single needs "value"')
        return False
    if not isinstance(rules.data["value"], SCALAR_TYPES):
        rules.error("value", "value must be a plain value")
        return False
    return ok


def _check_multiple(rules: Fields, ok: bool) -> bool:
    items = rules.sequence("items")
    if items is None:
        rules.error(None, 'style multiple needs a list of "items"')
        return False
    if not items:
        rules.error("items", "items must not be empty")
        return False
    # An item that is not a plain value was reported as an error by the caller.
    return ok and all(isinstance(item, SCALAR_TYPES) for item in items)


def _check_linear(rules: Fields, ok: bool) -> bool:
    data = rules.data
    for key in ("start", "end", "step"):
        if data.get(key) is None:
            rules.error(None, f'style linear needs "{key}"')
            ok = False
    if ok and data["step"] == 0:
        rules.error("step", "step must not be 0")
        ok = False
    if ok and (data["end"] - data["start"]) * data["step"] < 0:
        rules.error("step", "step goes away from end; no values would be produced")
        ok = False
    return ok


def _check_logspace(rules: Fields, ok: bool) -> bool:
    data = rules.data
    if data.get("start", data.get("min")) is None or data.get("end", data.get("max")) is None:
        rules.error(None, 'style logspace needs "start" and "end" (or "min" and "max")')
        ok = False
    ok = _check_count(rules) and ok
    base: Any = data.get("base")
    if is_number(base) and base <= 0:
        rules.error("base", "base must be positive")
        ok = False
    return ok


def _check_random(rules: Fields, ok: bool) -> bool:
    data = rules.data
    for key in ("min", "max"):
        if data.get(key) is None:
            rules.error(None, f'style random needs "{key}"')
            ok = False
    if data.get("count") is not None:
        ok = _check_count(rules) and ok
    distribution = data.get("distribution")
    text = str(distribution).strip().lower()
    if distribution is not None and _DISTRIBUTION_ALIASES.get(text, text) not in DISTRIBUTIONS:
        rules.error(
            "distribution",
            f"distribution {quoted(distribution)} is not one of: {', '.join(DISTRIBUTIONS)}",
        )
        ok = False
    if ok and data["min"] > data["max"]:
        rules.error("min", f"min ({data['min']}) is greater than max ({data['max']})")
        ok = False
    lowered = str(distribution).lower()
    if ok and _DISTRIBUTION_ALIASES.get(lowered, lowered) == "loguniform" and data["min"] <= 0:
        rules.error("min", "min must be positive for a loguniform distribution")
        ok = False
    return ok


#: What each style needs of its rules (see :func:`_check_rules`).
_STYLE_CHECKS: dict[str, Callable[[Fields, bool], bool]] = {
    "single": _check_single,
    "multiple": _check_multiple,
    "linear": _check_linear,
    "logspace": _check_logspace,
    "random": _check_random,
}


def _check_count(rules: Fields) -> bool:
    count = rules.data.get("count")
    if count is None:
        rules.error(None, 'rules need "count"')
        return False
    if not is_number(count) or not float(count).is_integer() or count < 1:
        rules.error("count", "count must be a whole number of at least 1")
        return False
    return True


__all__ = ["DISTRIBUTIONS", "MAX_VALUES", "STYLES", "SearchRange", "TaskParameter"]
