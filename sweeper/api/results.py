"""The typed results the API returns: a sweep's and a pipeline's (``to_dict()`` for ``--json``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sweeper.status import Status

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class TrialSummary:
    """One trial of a sweep's result: its execution, objective value(s) and parameters."""

    execution_id: str | None
    trial_number: int
    value: float | None
    values: Mapping[str, float]
    parameters: Mapping[str, Any]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialSummary:
        """From a ``best`` entry of the ``sweep --json`` summary."""
        return cls(
            execution_id=data.get("execution_id"),
            trial_number=int(data["trial_number"]),
            value=data.get("value"),
            values=dict(data.get("values") or {}),
            parameters=dict(data.get("parameters") or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``best`` entry of the ``sweep --json`` summary."""
        return {
            "execution_id": self.execution_id,
            "trial_number": self.trial_number,
            "value": self.value,
            "values": dict(self.values),
            "parameters": dict(self.parameters),
        }


@dataclass(frozen=True)
class SweepResult:
    """How a sweep ended: ``to_dict()`` is the summary ``sweep --json`` prints.

    ``best`` is the best trial (one metric), the Pareto front (several metrics) or None (no
    metric, or no trial completed). ``failures`` group the failed trials by class and
    reason, ``failure_classes`` count them by class (oom, time_limit, user_error,
    infrastructure). ``reused`` counts the trials answered from the store (``reuse``);
    ``warm_start`` says what a warm start added and why the rest did not fit. ``failure``
    says why the sweep failed, when it did (too many failed trials, none completed); it is
    not part of the summary.
    """

    sweep_id: str
    status: Status
    counts: Mapping[str, int]
    best: TrialSummary | tuple[TrialSummary, ...] | None
    failures: tuple[Mapping[str, Any], ...] = ()
    failure: str | None = None
    failure_classes: Mapping[str, int] = field(default_factory=dict)
    reused: int = 0
    warm_start: Mapping[str, Any] | None = None

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any], failure: str | None = None) -> SweepResult:
        """From the summary :meth:`SweepRunner.run` returns."""
        best = summary.get("best")
        return cls(
            sweep_id=summary["sweep_id"],
            status=Status(summary["status"]),
            counts=dict(summary["trials"]),
            best=(
                TrialSummary.from_dict(best)
                if isinstance(best, Mapping)
                else tuple(TrialSummary.from_dict(t) for t in best)
                if isinstance(best, list | tuple)
                else None
            ),
            failures=tuple(dict(group) for group in summary.get("failures") or ()),
            failure=failure,
            failure_classes=dict(summary.get("failure_classes") or {}),
            reused=int(summary.get("reused") or 0),
            warm_start=summary.get("warm_start"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``sweep --json`` summary."""
        best: Any = self.best
        if isinstance(best, TrialSummary):
            best = best.to_dict()
        elif isinstance(best, tuple):
            best = [trial.to_dict() for trial in best]
        summary = {
            "sweep_id": self.sweep_id,
            "trials": dict(self.counts),
            "best": best,
            "failures": [dict(group) for group in self.failures],
            "failure_classes": dict(self.failure_classes),
            "reused": self.reused,
            "status": str(self.status),
        }
        if self.warm_start is not None:
            summary["warm_start"] = dict(self.warm_start)
        return summary


@dataclass(frozen=True)
class NodeResult:
    """One node of a pipeline run: how it ended and the executions it ran.

    ``execution_id`` is the execution whose outputs flow downstream (a task node's best
    one); ``execution_ids`` every execution the node ran last (one per variant of a task).
    """

    name: str
    type: str
    status: Status
    execution_id: str | None
    execution_ids: tuple[str, ...] = ()
    best_execution_id: str | None = None
    reused_from: str | None = None
    error: str | None = None

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> NodeResult:
        """From a node of the ``pipeline run --json`` summary."""
        execution_id = data.get("execution_id")
        ids = data.get("execution_ids")
        return cls(
            name=name,
            type=str(data.get("type", "execution")),
            status=Status(data["status"]),
            execution_id=execution_id,
            execution_ids=tuple(ids)
            if ids is not None
            else ((execution_id,) if execution_id else ()),
            best_execution_id=data.get("best_execution_id"),
            reused_from=data.get("reused_from"),
            error=data.get("error"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The node as ``pipeline run --json`` prints it."""
        data: dict[str, Any] = {
            "status": str(self.status),
            "type": self.type,
            "execution_id": self.execution_id,
            "reused_from": self.reused_from,
        }
        if self.type == "task":
            data["execution_ids"] = list(self.execution_ids)
            data["best_execution_id"] = self.best_execution_id
        if self.error:
            data["error"] = self.error
        return data


@dataclass(frozen=True)
class PipelineResult:
    """How a pipeline run ended: ``to_dict()`` is the summary ``pipeline run --json`` prints.

    ``status`` is ``complete``, ``error``, ``stopped`` (an action stopped it) or
    ``interrupted``; ``error`` says why when it is not complete; ``nodes`` are by name, in
    the pipeline's order.
    """

    pipeline_run_id: str
    pipeline: str
    status: Status
    error: str | None
    nodes: Mapping[str, NodeResult]
    created_at: str | None = None
    updated_at: str | None = None

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any]) -> PipelineResult:
        """From the summary :meth:`PipelineRunner.run` returns."""
        return cls(
            pipeline_run_id=summary["pipeline_run_id"],
            pipeline=str(summary.get("pipeline")),
            status=Status(summary["status"]),
            error=summary.get("error"),
            nodes={
                name: NodeResult.from_dict(name, node)
                for name, node in (summary.get("nodes") or {}).items()
            },
            created_at=summary.get("created_at"),
            updated_at=summary.get("updated_at"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``pipeline run --json`` summary."""
        return {
            "pipeline_run_id": self.pipeline_run_id,
            "pipeline": self.pipeline,
            "status": str(self.status),
            "error": self.error,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "nodes": {name: node.to_dict() for name, node in self.nodes.items()},
        }
