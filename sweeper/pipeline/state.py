"""A pipeline run's durable record: ``pipelines/<run_id>/run.json`` and ``pipeline_runs`` rows.

``run.json`` is rewritten whenever a node changes state, and before an execution is
submitted its id is written there, so a killed driver leaves enough to ``resume``: nodes
that completed are kept, executions that finished while the driver was gone are picked
up from their records, and the rest run again. The ``pipeline_runs`` dataset gets a row
(``pipeline_run_id, pipeline, status, nodes`` as JSON, ``created_at, updated_at``) at each
change of the run's status and each node's end; readers keep the latest row per id.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sweeper.errors import StoreError
from sweeper.status import Status

if TYPE_CHECKING:
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
    status: str = Status.PENDING
    attempt: int = 1
    retries: int = 0
    reused_from: str | None = None
    error: str | None = None


@dataclass
class NodeState:
    """Where one node stands."""

    name: str
    type: str = "execution"
    status: str = Status.PENDING
    children: list[Child] = field(default_factory=list)
    best_execution_id: str | None = None
    error: str | None = None
    started_at: str | None = None
    ended_at: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeState:
        """Read a node back from ``run.json``."""
        children = [Child(**c) for c in data.get("children", [])]
        fields = {
            k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "children"
        }
        return cls(children=children, **fields)

    @property
    def execution_ids(self) -> list[str]:
        """Ids of the node's latest executions (one per variant for a task node)."""
        return [c.execution_id for c in self.children if c.execution_id]

    def public(self) -> dict[str, Any]:
        """The node as ``--json`` shows it."""
        best = self.best_execution_id
        if best is None and self.type == "execution" and self.execution_ids:
            best = self.execution_ids[-1]
        chosen = next((c for c in self.children if c.execution_id == best), None)
        data: dict[str, Any] = {
            "status": self.status,
            "type": self.type,
            "execution_id": best,
            "reused_from": chosen.reused_from if chosen else None,
        }
        if self.type == "task":
            data["execution_ids"] = self.execution_ids
            data["best_execution_id"] = self.best_execution_id
        if self.error:
            data["error"] = self.error
        return data


class PipelineState:
    """Reads and writes one pipeline run's record in the store."""

    def __init__(self, store: RecordStore, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.data: dict[str, Any] = {}
        self.nodes: dict[str, NodeState] = {}

    @classmethod
    def load(cls, store: RecordStore, run_id: str) -> PipelineState:
        """An existing run; :class:`StoreError` naming the store when there is none."""
        state = cls(store, run_id)
        data = store.get_pipeline_run(run_id)
        if data is None:
            raise StoreError(f'unknown pipeline run "{run_id}" in the store {store.location}')
        state.data = data
        state.nodes = {name: NodeState.from_dict(n) for name, n in data.get("nodes", {}).items()}
        return state

    def create(self, data: dict[str, Any], nodes: dict[str, NodeState]) -> None:
        """Record a new run before any node starts."""
        now = utc_now()
        self.data = {
            "pipeline_run_id": self.run_id,
            "status": Status.RUNNING,
            "created_at": now,
            "updated_at": now,
            **data,
        }
        self.nodes = nodes
        self.save(row=True)

    @property
    def status(self) -> str:
        """The run's status: running, complete, error, stopped or interrupted."""
        return str(self.data.get("status", Status.RUNNING))

    def public_nodes(self) -> dict[str, dict[str, Any]]:
        """Every node as ``--json`` shows it."""
        return {name: node.public() for name, node in self.nodes.items()}

    def summary(self) -> dict[str, Any]:
        """The ``run``/``show --json`` document."""
        return {
            "pipeline_run_id": self.run_id,
            "pipeline": self.data.get("pipeline"),
            "status": self.status,
            "error": self.data.get("error"),
            "created_at": self.data.get("created_at"),
            "updated_at": self.data.get("updated_at"),
            "nodes": self.public_nodes(),
        }

    def save(self, *, row: bool = False, **changes: Any) -> None:
        """Rewrite ``run.json`` (with ``changes``); with ``row``, log a ``pipeline_runs`` row."""
        self.data.update(changes)
        self.data["updated_at"] = utc_now()
        self.data["nodes"] = {name: asdict(node) for name, node in self.nodes.items()}
        self.store.put_pipeline_run(self.run_id, self.data)
        if row:
            self.store.write_rows(
                "pipeline_runs",
                [
                    {
                        "pipeline_run_id": self.run_id,
                        "pipeline": self.data.get("pipeline"),
                        "status": self.status,
                        "nodes": self.public_nodes(),
                        "created_at": self.data.get("created_at"),
                        "updated_at": self.data["updated_at"],
                    }
                ],
            )


def latest_runs(store: RecordStore) -> list[dict[str, Any]]:
    """The latest ``pipeline_runs`` row of every run, newest first."""
    rows = store.read_dataset("pipeline_runs").to_pylist()
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = row.get("pipeline_run_id")
        if key is None:
            continue
        if key not in latest or str(row.get("updated_at")) >= str(latest[key].get("updated_at")):
            latest[key] = row
    return sorted(latest.values(), key=lambda r: str(r.get("created_at")), reverse=True)
