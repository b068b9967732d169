"""Tasks (task blueprints): a step run many times over variants of its parameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sweeper.config.expressions import Expression
from sweeper.config.fields import Fields, plain
from sweeper.config.loader import YamlMap
from sweeper.config.named import get_by_name, unique_by_name
from sweeper.config.problems import Problems, quoted
from sweeper.config.step import parse_optional_expression
from sweeper.config.variants import DISTRIBUTIONS, STYLES, SearchRange, TaskParameter

TASK_TYPES = ("grid_search", "random_search", "bayesian_tpe", "manual_search", "distributed")
ON_CHILD_ERROR = ("continue-and-complete", "continue-and-error", "stop-all-and-error")
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


def normalize_task_type(value: str) -> str:
    """Valohai's task type spelling: case-insensitive, ``-`` read as ``_``."""
    return value.strip().lower().replace("-", "_")


def _at_least_one(f: Fields, key: str) -> int | None:
    """A count: an integer (Valohai's rule); below 1 it blocks a run (sweeper's)."""
    value = f.integer(key)
    if value is not None and value < 1:
        f.problems.blocking().error(f.line_of(key), f"{f.prefix}{key} must be at least 1")
        return None
    return value


def _parse_type(f: Fields) -> str:
    """The task's type, normalised (an unknown one is reported, and returned as read)."""
    raw_type = f.string("type") or None  # Valohai reads an empty type as the default
    if raw_type is None:
        return "grid_search"
    type_ = normalize_task_type(raw_type)
    if type_ not in TASK_TYPES:
        f.error("type", f"type {quoted(raw_type)} is not one of: {', '.join(TASK_TYPES)}")
    return type_


def _parse_on_child_error(f: Fields) -> str | None:
    """``on-child-error``, normalised; ``None`` when absent or unknown (reported)."""
    raw = f.string("on-child-error") or None
    if raw is None:
        return None
    on_child_error = raw.strip().lower().replace("_", "-")
    if on_child_error not in ON_CHILD_ERROR:
        f.error(
            "on-child-error",
            f"on-child-error {quoted(raw)} is not one of: {', '.join(ON_CHILD_ERROR)}",
        )
        return None
    return on_child_error


def _check_for_type(
    f: Fields,
    type_: str,
    parameters: tuple[TaskParameter, ...],
    parameter_sets: tuple[dict[str, Any], ...],
) -> None:
    """Report what the task's type ignores, or needs but lacks."""
    if parameter_sets and type_ != "manual_search":
        f.warning("parameter-sets", "parameter-sets only make sense with type manual_search")
    if type_ == "manual_search" and not parameter_sets and "parameters" not in f:
        f.warning(None, "a manual_search task without parameter-sets runs nothing")
    if type_ == "bayesian_tpe":
        return
    for key in BAYESIAN_ONLY:
        if key in f:
            f.warning(key, f"{key} only makes sense for bayesian_tpe tasks")
    for parameter in parameters:
        if parameter.style == "random" and parameter.rules.get("count") is None:
            f.problems.blocking().error(
                parameter.line,
                f'task parameter {quoted(parameter.name)}: rules: style random needs "count" '
                "(only bayesian_tpe tasks do without)",
            )


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
        f = Fields.named(data, problems, "task", allowed=_KEYS)
        name = f.name()
        step = f.name("step")
        type_ = _parse_type(f)
        parameters = unique_by_name(
            (p for _, item in f.items("parameters") if (p := TaskParameter.parse(item, problems))),
            lambda parameter, first: problems.warning(
                parameter.line,
                f"{f.prefix}parameter {quoted(parameter.name)} is varied more than once "
                f"(first at line {first.line}); the first is used",
            ),
            keep="first",
        )
        parameter_sets = tuple(plain(item) for _, item in f.items("parameter-sets") if item)
        if "parameters" not in data and "parameter-sets" not in data:
            f.error(None, 'a task needs "parameters" or "parameter-sets"')
        on_child_error = _parse_on_child_error(f)
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
        _check_for_type(f, type_, parameters, parameter_sets)
        if name is None or step is None or type_ not in TASK_TYPES:
            return None
        return cls(
            name=name,
            step=step,
            type=type_,
            parameters=parameters,
            parameter_sets=parameter_sets,
            on_child_error=on_child_error,
            line=f.line,
            step_line=f.line_of("step"),
            **task,  # type: ignore[arg-type]
        )

    def get_parameter(self, name: str) -> TaskParameter:
        """The variant parameter called ``name``; :class:`ConfigError` otherwise."""
        return get_by_name(
            self.parameters,
            name,
            lambda known: (
                f"task {quoted(self.name)} does not vary parameter {quoted(name)}; "
                f"it varies: {known}"
            ),
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
