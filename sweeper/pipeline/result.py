"""How a pipeline run ended, as typed values: :class:`PipelineResult` and its :class:`NodeResult`\\s.

They are built from the run's state (:meth:`sweeper.pipeline.state.PipelineState.result`), the
one place a node's public form is decided: ``sweep pipeline run/resume/show`` print them,
``run_pipeline`` returns them, and the ``pipeline_runs`` rows keep ``to_dict()`` of each
node. :mod:`sweeper.api` re-exports both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sweeper.status import Status


@dataclass(frozen=True)
class NodeResult:
    """One node of a pipeline run: how it ended and the executions it ran.

    ``execution_id`` is the execution whose outputs flow downstream (a task node's best
    one); ``execution_ids`` every execution the node ran last (one per variant of a task).
    A deployment node runs none: ``version_id`` is the version it made.
    """

    name: str
    type: str
    status: Status
    execution_id: str | None
    execution_ids: tuple[str, ...] = ()
    best_execution_id: str | None = None
    reused_from: str | None = None
    error: str | None = None
    version_id: str | None = None

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
        if self.type == "deployment":
            data["version_id"] = self.version_id
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
