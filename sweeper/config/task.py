"""Tasks (task blueprints): a step run many times over variants of its parameters."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sweeper.config.expressions import Expression
from sweeper.config.fields import SCALAR_TYPES, Fields, is_number, plain
from sweeper.config.loader import YamlMap
from sweeper.config.problems import Problems, listed, quoted
from sweeper.config.step import parse_optional_expression
from sweeper.errors import ConfigError

TASK_TYPES = ("grid_search", "random_search", "bayesian_tpe", "manual_search", "distributed")
STYLES = ("single", "multiple", "linear", "logspace", "random")
ON_CHILD_ERROR = ("continue-and-complete", "continue-and-error", "stop-all-and-error")
DISTRIBUTIONS = ("uniform", "loguniform")
#: A variant parameter may not expand to more values than this.
MAX_VALUES = 10_000
#: Keys of a task that Valohai uses only for Bayesian optimization.
# sweeper uses optimization-target-metric/-value for every task type (the metric to rank by).
BAYESIAN_ONLY = ("engine",)

_KEYS = (
    "name",
    "step",
    "type",
    "description",
    "parameters",
    "parameter-sets",
    "execution-count",
    "execution-batch-size",
    "maximum-queued-executions",
    "optimization-target-metric",
    "optimization-target-value",
    "on-child-error",
    "stop-condition",
    "reuse-children",
    "engine",
)
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


def normalize_task_type(value: str) -> str:
    """Valohai's task type spelling: case-insensitive, ``-`` read as ``_``."""
    return value.strip().lower().replace("-", "_")


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
        label = quoted(data["name"]) if isinstance(data.get("name"), str) else "(unnamed)"
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
        rules = Fields(raw_rules, problems, prefix=prefix, allowed=_RULE_KEYS)
        for key in _NUMBER_RULES:
            rules.number(key)
        for key in ("integerify", "numberify"):
            rules.boolean(key, False)
        rules.string("distribution")
        items = rules.sequence("items")
        for index, item in enumerate(items or ()):
            if not isinstance(item, SCALAR_TYPES):
                problems.error(
                    items.line_of(index) if items is not None else f.line,
                    f"{prefix}items: item {index + 1} must be a number, a string or true/false",
                )
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


def _check_rules(rules: Fields, style: str) -> bool:
    """Check the rules a style needs; report problems and return whether values can be made."""
    ok = True
    for key in rules.data:
        if key in _RULE_KEYS and key not in _STYLE_RULES[style]:
            rules.warning(key, f"{key} has no effect with style {style}")
    data = rules.data
    for key in _NUMBER_RULES:
        if data.get(key) is not None and not is_number(data[key]):
            ok = False  # reported as an error by the caller
    if style == "single":
        if "value" not in data:
            rules.error(None, 'style single needs "value"')
            return False
        if not isinstance(data["value"], SCALAR_TYPES):
            rules.error("value", "value must be a plain value")
            return False
    elif style == "multiple":
        items = rules.sequence("items")
        if items is None:
            rules.error(None, 'style multiple needs a list of "items"')
            return False
        if not items:
            rules.error("items", "items must not be empty")
            return False
        if not all(isinstance(item, SCALAR_TYPES) for item in items):
            ok = False  # reported as an error by the caller
    elif style == "linear":
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
    elif style == "logspace":
        if data.get("start", data.get("min")) is None or data.get("end", data.get("max")) is None:
            rules.error(None, 'style logspace needs "start" and "end" (or "min" and "max")')
            ok = False
        ok = _check_count(rules) and ok
        base: Any = data.get("base")
        if is_number(base) and base <= 0:
            rules.error("base", "base must be positive")
            ok = False
    elif style == "random":
        for key in ("min", "max"):
            if data.get(key) is None:
                rules.error(None, f'style random needs "{key}"')
                ok = False
        if data.get("count") is not None:
            ok = _check_count(rules) and ok
        distribution = data.get("distribution")
        if distribution is not None:
            text = str(distribution).strip().lower()
            if _DISTRIBUTION_ALIASES.get(text, text) not in DISTRIBUTIONS:
                rules.error(
                    "distribution",
                    f"distribution {quoted(distribution)} is not one of: {', '.join(DISTRIBUTIONS)}",
                )
                ok = False
        if ok and data["min"] > data["max"]:
            rules.error("min", f"min ({data['min']}) is greater than max ({data['max']})")
            ok = False
        if (
            ok
            and _DISTRIBUTION_ALIASES.get(str(distribution).lower(), str(distribution).lower())
            == "loguniform"
        ):
            if data["min"] <= 0:
                rules.error("min", "min must be positive for a loguniform distribution")
                ok = False
    return ok


def _check_count(rules: Fields) -> bool:
    count = rules.data.get("count")
    if count is None:
        rules.error(None, 'rules need "count"')
        return False
    if not is_number(count) or not float(count).is_integer() or count < 1:
        rules.error("count", "count must be a whole number of at least 1")
        return False
    return True


def _at_least_one(f: Fields, key: str) -> int | None:
    """A count: an integer (Valohai's rule); below 1 it blocks a run (sweeper's)."""
    value = f.integer(key)
    if value is not None and value < 1:
        f.problems.blocking().error(f.line_of(key), f"{f.prefix}{key} must be at least 1")
        return None
    return value


@dataclass(frozen=True, kw_only=True)
class Task:
    """A task blueprint: run ``step`` over variants of its parameters.

    ``type`` is normalised (``grid-search`` and ``GRID_SEARCH`` are ``grid_search``).
    ``parameter_sets`` are the explicit parameter combinations of a manual search.
    """

    name: str
    step: str
    type: str = "grid_search"
    parameters: tuple[TaskParameter, ...] = ()
    parameter_sets: tuple[dict[str, Any], ...] = ()
    description: str | None = None
    execution_count: int | None = None
    execution_batch_size: int | None = None
    maximum_queued_executions: int | None = None
    optimization_target_metric: str | None = None
    optimization_target_value: float | None = None
    on_child_error: str | None = None
    stop_condition: Expression | None = None
    reuse_children: bool = False
    engine: str | None = None
    line: int | None = field(default=None, compare=False, repr=False)
    step_line: int | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, data: YamlMap, problems: Problems) -> Task | None:
        """Parse the mapping under a top-level ``task`` key."""
        label = quoted(data["name"]) if isinstance(data.get("name"), str) else "(unnamed)"
        f = Fields(data, problems, prefix=f"task {label}: ", allowed=_KEYS)
        name = f.name()
        step = f.name("step")
        type_ = "grid_search"
        raw_type = f.string("type") or None  # Valohai reads an empty type as the default
        if raw_type is not None:
            type_ = normalize_task_type(raw_type)
            if type_ not in TASK_TYPES:
                f.error("type", f"type {quoted(raw_type)} is not one of: {', '.join(TASK_TYPES)}")
        parameters: list[TaskParameter] = []
        seen: dict[str, TaskParameter] = {}
        for _, item in f.items("parameters"):
            parameter = TaskParameter.parse(item, problems)
            if parameter is None:
                continue
            if parameter.name in seen:
                problems.warning(
                    parameter.line,
                    f"task {label}: parameter {quoted(parameter.name)} is varied more than once "
                    f"(first at line {seen[parameter.name].line}); the first is used",
                )
                continue
            seen[parameter.name] = parameter
            parameters.append(parameter)
        parameter_sets = tuple(plain(item) for _, item in f.items("parameter-sets") if item)
        if "parameters" not in data and "parameter-sets" not in data:
            f.error(None, 'a task needs "parameters" or "parameter-sets"')
        on_child_error = None
        raw_on_child_error = f.string("on-child-error") or None
        if raw_on_child_error is not None:
            on_child_error = raw_on_child_error.strip().lower().replace("_", "-")
            if on_child_error not in ON_CHILD_ERROR:
                f.error(
                    "on-child-error",
                    f"on-child-error {quoted(raw_on_child_error)} is not one of: {', '.join(ON_CHILD_ERROR)}",
                )
        target_value = f.number("optimization-target-value")
        task = dict(
            description=f.string("description"),
            execution_count=_at_least_one(f, "execution-count"),
            execution_batch_size=_at_least_one(f, "execution-batch-size"),
            maximum_queued_executions=_at_least_one(f, "maximum-queued-executions"),
            optimization_target_metric=f.string("optimization-target-metric"),
            optimization_target_value=None if target_value is None else float(target_value),
            stop_condition=parse_optional_expression(f, "stop-condition"),
            reuse_children=f.boolean("reuse-children", False),
            engine=f.string("engine"),
        )
        if parameter_sets and type_ != "manual_search":
            f.warning("parameter-sets", "parameter-sets only make sense with type manual_search")
        if type_ == "manual_search" and not parameter_sets and "parameters" not in f:
            f.warning(None, "a manual_search task without parameter-sets runs nothing")
        if type_ != "bayesian_tpe":
            for key in BAYESIAN_ONLY:
                if key in f:
                    f.warning(key, f"{key} only makes sense for bayesian_tpe tasks")
        if type_ != "bayesian_tpe":
            for parameter in parameters:
                if parameter.style == "random" and parameter.rules.get("count") is None:
                    problems.blocking().error(
                        parameter.line,
                        f'task parameter {quoted(parameter.name)}: rules: style random needs "count" '
                        "(only bayesian_tpe tasks do without)",
                    )
        if name is None or step is None or type_ not in TASK_TYPES:
            return None
        return cls(
            name=name,
            step=step,
            type=type_,
            parameters=tuple(parameters),
            parameter_sets=parameter_sets,
            on_child_error=on_child_error if on_child_error in ON_CHILD_ERROR else None,
            line=f.line,
            step_line=f.line_of("step"),
            **task,  # type: ignore[arg-type]
        )

    def get_parameter(self, name: str) -> TaskParameter:
        """The variant parameter called ``name``; :class:`ConfigError` otherwise."""
        for parameter in self.parameters:
            if parameter.name == name:
                return parameter
        known = listed(p.name for p in self.parameters)
        raise ConfigError(
            f"task {quoted(self.name)} does not vary parameter {quoted(name)}; it varies: {known}"
        )

    def serialize(self) -> dict[str, Any]:
        """This task as valohai.yaml data (defaults left out)."""
        data: dict[str, Any] = {"name": self.name, "step": self.step, "type": self.type}
        optional: list[tuple[str, Any]] = [
            ("description", self.description),
            ("parameters", [p.serialize() for p in self.parameters]),
            ("parameter-sets", [dict(s) for s in self.parameter_sets]),
            ("execution-count", self.execution_count),
            ("execution-batch-size", self.execution_batch_size),
            ("maximum-queued-executions", self.maximum_queued_executions),
            ("optimization-target-metric", self.optimization_target_metric),
            ("optimization-target-value", self.optimization_target_value),
            ("on-child-error", self.on_child_error),
            ("stop-condition", self.stop_condition.text if self.stop_condition else None),
            ("reuse-children", self.reuse_children or None),
            ("engine", self.engine),
        ]
        for key, value in optional:
            if value is not None and value != []:
                data[key] = value
        return data


__all__ = [
    "DISTRIBUTIONS",
    "ON_CHILD_ERROR",
    "STYLES",
    "SearchRange",
    "TASK_TYPES",
    "Task",
    "TaskParameter",
    "normalize_task_type",
]
