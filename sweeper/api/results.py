"""The typed results the API returns: a sweep's and a pipeline's (``to_dict()`` for ``--json``).

A sweep's (:class:`SweepResult`, its :class:`TrialSummary` and :class:`WarmStart`) are
defined on the sweep's floor, :mod:`sweeper.sweep.result`, whose engine builds them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sweeper.status import Status
from sweeper.sweep.result import SweepResult, TrialSummary, WarmStart

__all__ = ["NodeResult", "PipelineResult", "SweepResult", "TrialSummary", "WarmStart"]


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
