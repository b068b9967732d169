"""A pipeline run's durable record: ``pipelines/<run_id>/run.json`` and ``pipeline_runs`` rows.

``run.json`` is rewritten whenever a node changes state, and before an execution is
submitted its id is written there, so a killed driver leaves enough to ``resume``: nodes
that completed are kept, executions that finished while the driver was gone are picked
up from their records, and the rest run again. The ``pipeline_runs`` dataset gets a row
(``pipeline_run_id, pipeline, status, nodes`` as JSON, ``created_at, updated_at``) at each
change of the run's status and each node's end; readers keep the latest row per id.

:class:`PipelineState` is that record as a value: the
:class:`~sweeper.pipeline.policy.PipelinePolicy` owns it, changes it and saves it through its
store; :meth:`PipelineState.result` is the typed result the API and the CLI read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sweeper.errors import StoreError
from sweeper.pipeline.plan import PipelinePlan, RunSource
from sweeper.pipeline.result import NodeResult, PipelineResult
from sweeper.status import Status

if TYPE_CHECKING:
    from sweeper.record import ExecutionRecord
    from sweeper.store import RecordStore


def utc_now() -> str:
    """The current time as an ISO 8601 string in UTC."""
    return datetime.now(timezone.utc).isoformat()


@dataclass
class Child:
    """One execution (attempt) of a node: a task node has one per variant."""

    index: int
    parameters: dict[str, Any]
    execution_id: str | None = None
    status: Status = Status.PENDING
    attempt: int = 1
    retries: int = 0
    reused_from: str | None = None
    error: str | None = None

    @property
    def active(self) -> bool:
        """Whether the child has yet to end (pending or running)."""
        return self.status in (Status.PENDING, Status.RUNNING)

    def ended(self, record: ExecutionRecord) -> None:
        """The child's execution ended as ``record`` says."""
        self.status, self.reused_from, self.error = record.status, record.reused_from, record.error

    def again(self, *, retry: bool) -> None:
        """Make the child run again as its next attempt (a retry counts towards the limit)."""
        self.status = Status.PENDING
        self.attempt += 1
        self.retries = self.retries + 1 if retry else 0


@dataclass
class NodeState:
    """Where one node stands."""

    name: str
    type: str = "execution"
    status: Status = Status.PENDING
    children: list[Child] = field(default_factory=list)
    best_execution_id: str | None = None
    error: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    #: The version a deployment node made (its unique id; deployment nodes run no execution).
    version_id: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodeState:
        """Read a node back from ``run.json``."""
        children = [
            Child(**{**c, "status": Status(c.get("status", Status.PENDING))})
            for c in data.get("children", [])
        ]
        fields = {
            k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "children"
        }
        fields["status"] = Status(fields.get("status", Status.PENDING))
        return cls(children=children, **fields)

    @property
    def execution_ids(self) -> list[str]:
        """Ids of the node's latest executions (one per variant for a task node)."""
        return [c.execution_id for c in self.children if c.execution_id]

    def skip_pending(self) -> None:
        """Skip the children that have not started (the node or the pipeline stops)."""
        for child in self.children:
            if child.status == Status.PENDING:
                child.status = Status.SKIPPED

    def finish(self, status: Status, error: str | None) -> None:
        """The node ended with ``status`` (and why, unless it completed)."""
        self.status = status
        self.error = error
        self.ended_at = utc_now()

    def reset(self) -> None:
        """Make the node pending again (a resume), its children as they are."""
        self.status = Status.PENDING
        self.error = None
        self.best_execution_id = None
        self.ended_at = None

    def result(self) -> NodeResult:
        """The node as the API and ``--json`` show it."""
        best = self.best_execution_id
        if best is None and self.type == "execution" and self.execution_ids:
            best = self.execution_ids[-1]
        chosen = next((c for c in self.children if c.execution_id == best), None)
        task = self.type == "task"
        return NodeResult(
            name=self.name,
            type=self.type,
            status=Status(self.status),
            execution_id=best,
            execution_ids=tuple(self.execution_ids) if task else ((best,) if best else ()),
            best_execution_id=self.best_execution_id if task else None,
            reused_from=chosen.reused_from if chosen else None,
            error=self.error or None,
            version_id=self.version_id,
        )


@dataclass
class PipelineState:
    """One pipeline run's record as a value: what it was started with and where its nodes are."""

    run_id: str
    source: RunSource
    nodes: dict[str, NodeState]
    status: Status = Status.RUNNING
    error: str | None = None
    created_at: str | None = field(default_factory=utc_now)
    updated_at: str | None = None

    @classmethod
    def new(cls, plan: PipelinePlan) -> PipelineState:
        """A new run of ``plan``, every node pending."""
        nodes = {
            name: NodeState(name=name, type=node.node.type)
            for name, node in plan.graph.plans.items()
        }
        return cls(run_id=plan.run_id, source=plan.source, nodes=nodes)

    @classmethod
    def load(cls, store: RecordStore, run_id: str) -> PipelineState:
        """An existing run; :class:`StoreError` naming the store when there is none."""
        data = store.get_pipeline_run(run_id)
        if data is None:
            raise StoreError(f'unknown pipeline run "{run_id}" in the store {store.location}')
        return cls(
            run_id=str(data.get("pipeline_run_id", run_id)),
            source=RunSource.from_dict(data),
            nodes={name: NodeState.from_dict(n) for name, n in data.get("nodes", {}).items()},
            status=Status(data.get("status", Status.RUNNING)),
            error=data.get("error"),
            created_at=data.get("created_at"),
            updated_at=data.get("updated_at"),
        )

    @property
    def pipeline(self) -> str:
        """The pipeline's name."""
        return self.source.options.pipeline

    def result(self) -> PipelineResult:
        """The run as the API returns it and ``run/show --json`` print it."""
        return PipelineResult(
            pipeline_run_id=self.run_id,
            pipeline=self.pipeline,
            status=Status(self.status),
            error=self.error,
            created_at=self.created_at,
            updated_at=self.updated_at,
            nodes={name: node.result() for name, node in self.nodes.items()},
        )

    def save(self, store: RecordStore, *, row: bool = False) -> None:
        """Rewrite ``run.json``; with ``row``, log a ``pipeline_runs`` row too."""
        self.updated_at = utc_now()
        store.put_pipeline_run(
            self.run_id,
            {
                "pipeline_run_id": self.run_id,
                "status": self.status,
                "created_at": self.created_at,
                "updated_at": self.updated_at,
                **self.source.to_dict(),
                "nodes": {name: asdict(node) for name, node in self.nodes.items()},
                "error": self.error,
            },
        )
        if row:
            store.write_rows(
                "pipeline_runs",
                [
                    {
                        "pipeline_run_id": self.run_id,
                        "pipeline": self.pipeline,
                        "status": str(self.status),
                        "nodes": {
                            name: node.result().to_dict() for name, node in self.nodes.items()
                        },
                        "created_at": self.created_at,
                        "updated_at": self.updated_at,
                    }
                ],
            )


@dataclass(frozen=True)
class RunRow:
    """The latest ``pipeline_runs`` row of one run, as ``sweep pipeline ls`` lists it."""

    pipeline_run_id: str
    pipeline: str | None
    status: str | None
    nodes: Mapping[str, Mapping[str, Any]]
    created_at: Any = None
    updated_at: Any = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RunRow:
        """From a row of the dataset (``nodes`` is JSON text there)."""
        nodes = row.get("nodes")
        return cls(
            pipeline_run_id=str(row["pipeline_run_id"]),
            pipeline=row.get("pipeline"),
            status=row.get("status"),
            nodes=(json.loads(nodes) if isinstance(nodes, str) else nodes) or {},
            created_at=row.get("created_at"),
            updated_at=row.get("updated_at"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The row as ``sweep pipeline ls --json`` prints it (``nodes`` parsed)."""
        return asdict(self)


def latest_runs(store: RecordStore) -> list[RunRow]:
    """The latest ``pipeline_runs`` row of every run, newest first."""
    latest: dict[str, Mapping[str, Any]] = {}
    for row in store.read_dataset("pipeline_runs").to_pylist():
        key = row.get("pipeline_run_id")
        if key is None:
            continue
        if key not in latest or str(row.get("updated_at")) >= str(latest[key].get("updated_at")):
            latest[key] = row
    rows = sorted(latest.values(), key=lambda r: str(r.get("created_at")), reverse=True)
    return [RunRow.from_row(row) for row in rows]
