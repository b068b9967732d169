"""The typed results the API returns: a sweep's and a pipeline's (``to_dict()`` for ``--json``).

A pipeline's (:class:`NodeResult`, :class:`PipelineResult`) live in
:mod:`sweeper.pipeline.result`, beside the run's state that builds them; re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sweeper.pipeline.result import NodeResult as NodeResult
from sweeper.pipeline.result import PipelineResult as PipelineResult
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
