"""The executions of a task node: its parameter variants, and which execution is best.

A task node runs its step once per variant. Variants come from the node's task blueprint
(``task: NAME``: grid, random or manual parameter sets, as ``sweep --task`` reads them) and
from list values the pipeline gives the node's parameters (``-p NODE.PARAM=a -p
NODE.PARAM=b``, or a pipeline parameter whose default is a list), which add grid axes.
``bayesian_tpe`` tasks are run as random searches of ``execution-count`` draws.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from sweeper.config import Parameter, Task
from sweeper.errors import SweeperError
from sweeper.pipeline.graph import NodePlan, PipelineError
from sweeper.record import ExecutionRecord, guess_direction
from sweeper.status import Status


def _is_axis(value: Any, parameter: Parameter) -> bool:
    return isinstance(value, list) and parameter.multiple in (None, "none")


def group_size(plan: NodePlan) -> int | None:
    """A distributed task node's member count (all start together); None for other nodes."""
    task = plan.task
    if not plan.is_task or task is None or task.type != "distributed":
        return None
    return int(task.execution_count or 1)


def task_variants(plan: NodePlan, fixed: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every parameter combination the task node runs, in order (at least one).

    A distributed task's members all run its one parameter set.
    """
    step = plan.run_step
    base: dict[str, Any] = {}
    axes: dict[str, list[Any]] = {}
    for name, value in fixed.items():
        if _is_axis(value, step.get_parameter(name)):
            axes[name] = list(value)
        else:
            base[name] = value
    task = plan.task
    sets = _blueprint_sets(plan, task, base, axes) if task is not None else []
    grid = (
        [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]
        if axes
        else [{}]
    )
    variants = [{**base, **s, **g} for s in (sets or [{}]) for g in grid]
    size = group_size(plan)
    if size is not None:
        if len(variants) != 1:
            raise PipelineError(
                f'node "{plan.name}": task "{plan.task.name if plan.task else ""}" is distributed: '
                f"its members run one parameter set, not {len(variants)}"
            )
        return [dict(variants[0]) for _ in range(size)]
    if (
        task is not None
        and task.execution_count
        and task.type not in ("grid_search", "manual_search")
    ):
        variants = variants[: int(task.execution_count)]
    return variants


def _blueprint_sets(
    plan: NodePlan, task: Task, base: Mapping[str, Any], axes: dict[str, list[Any]]
) -> list[dict[str, Any]]:
    """The task blueprint's parameter sets (random draws included); its grid axes go to ``axes``.

    A parameter the pipeline gives a value (in ``base`` or ``axes``) keeps that value.
    """
    step = plan.run_step
    sets: list[dict[str, Any]] = []
    draws: dict[str, list[Any]] = {}
    try:
        if task.parameter_sets:
            sets = [
                {k: step.get_parameter(k).validate(v) for k, v in s.items()}
                for s in task.parameter_sets
            ]
        random_like = task.type in ("random_search", "bayesian_tpe")
        for variant in task.parameters:
            if variant.name in axes or variant.name in base:
                continue  # the pipeline's value wins over the blueprint
            parameter = step.get_parameter(variant.name)
            if random_like and variant.style == "random":
                count = int(task.execution_count or variant.value_count())
                draws[variant.name] = [
                    parameter.validate(v)
                    for v in variant.sample(count, seed=variant.rules.get("seed"))
                ]
            else:
                axes[variant.name] = [parameter.validate(v) for v in variant.values()]
    except SweeperError as exc:
        raise PipelineError(f'node "{plan.name}": task "{task.name}": {exc}') from None
    if not draws:
        return sets
    count = max(len(v) for v in draws.values())
    drawn = [{k: v[i % len(v)] for k, v in draws.items()} for i in range(count)]
    return [{**s, **d} for s in (sets or [{}]) for d in drawn]


def target_metric(plan: NodePlan) -> tuple[str | None, str]:
    """The metric that picks a task's best execution and its direction."""
    metric = plan.task.optimization_target_metric if plan.task is not None else None
    if not metric:
        return None, "maximize"
    return metric, guess_direction(metric)


def best_record(plan: NodePlan, records: Sequence[ExecutionRecord]) -> ExecutionRecord | None:
    """The best complete execution of a task node.

    With ``optimization-target-value`` the one closest to it, else the highest (lowest for
    ``*loss*``/``*error*``) ``optimization-target-metric``; without a metric, the last
    complete one.
    """
    complete = [r for r in records if r.status is Status.COMPLETE]
    if not complete:
        return None
    metric, direction = target_metric(plan)
    if metric is None:
        return complete[-1]
    scored = []
    for record in complete:
        value = record.metrics.get(metric)
        if (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(float(value))
        ):
            scored.append((float(value), record))
    if not scored:
        return None
    target = plan.task.optimization_target_value if plan.task is not None else None
    if target is not None:
        return min(scored, key=lambda item: abs(item[0] - float(target)))[1]
    pick = min if direction == "minimize" else max
    return pick(scored, key=lambda item: item[0])[1]


def stops_task(plan: NodePlan, record: ExecutionRecord) -> bool:
    """Whether one ended execution of a task node stops the rest of the task.

    A complete one whose metadata meets the task's stop condition does; so does a failed one
    with ``on-child-error: stop-all-and-error``.
    """
    task = plan.task
    if task is None:
        return False
    if record.status is not Status.COMPLETE:
        return task.on_child_error == "stop-all-and-error"
    if task.stop_condition is None:
        return False
    try:
        return bool(task.stop_condition.evaluate(dict(record.metrics), dict(record.parameters)))
    except Exception:  # a condition over a value this execution never printed: go on
        return False


def _group_failure(first: ExecutionRecord) -> str:
    """Why a distributed group failed: its first failed member's error (a group that was
    never placed has no member ids: its error says why)."""
    if first.member_id is None:
        return str(first.error)
    return f"member {first.member_id} failed: {first.error}"


def task_verdict(
    plan: NodePlan, records: Sequence[ExecutionRecord], *, halted: bool
) -> tuple[Status, str | None, ExecutionRecord | None]:
    """How a task node ended, from its executions' records: (status, error, best execution).

    ``halted``: the pipeline was stopped meanwhile (a node with no complete execution is then
    ``stopped``, not failed).
    """
    complete = [r for r in records if r.status is Status.COMPLETE]
    failed = [r for r in records if r.status not in (Status.COMPLETE, Status.STOPPED)]
    best = best_record(plan, records)
    if halted and not complete:
        return Status.STOPPED, "the pipeline stopped", None
    if failed and group_size(plan) is not None:  # a group completes only as a whole
        return Status.ERROR, _group_failure(failed[0]), best
    if not complete:
        return Status.ERROR, f"none of its {len(records)} executions completed", None
    if best is None:
        metric, _ = target_metric(plan)
        return Status.ERROR, f'none of its executions printed the metric "{metric}"', None
    on_child_error = plan.task.on_child_error if plan.task is not None else None
    if failed and on_child_error in ("continue-and-error", "stop-all-and-error"):
        return (
            Status.ERROR,
            f"{len(failed)} of its executions failed (on-child-error: {on_child_error})",
            best,
        )
    return Status.COMPLETE, None, best
