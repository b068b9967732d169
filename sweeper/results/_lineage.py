"""Lineage: which executions produced an execution's inputs, and who consumed its outputs.

Executions and data ("datum://<sha256>") are the nodes; an edge runs from a datum to the
execution that read it (``input``) and from an execution to the datum it wrote (``output``).
A datum's producer is the ``producer_execution_id`` its consumer recorded, or else every
execution that output the same content. Both directions are followed recursively.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sweeper.store import blob_uri


@dataclass(frozen=True)
class LineageNode:
    """An execution (id = execution id) or a datum (id = ``datum://<sha256>`` or its URI)."""

    id: str
    kind: str
    attrs: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class LineageEdge:
    """Data flow: datum -> execution (``input``) or execution -> datum (``output``)."""

    source: str
    target: str
    kind: str
    name: str | None = None


@dataclass
class Lineage:
    """The lineage graph around ``root``; ``upstream``/``downstream`` list the node ids reached."""

    root: str
    nodes: dict[str, LineageNode]
    edges: list[LineageEdge]
    upstream: list[str]
    downstream: list[str]

    def executions(self, direction: str | None = None) -> list[str]:
        """Execution ids upstream, downstream, or (None) anywhere in the graph but the root."""
        ids = {"upstream": self.upstream, "downstream": self.downstream}.get(
            direction or "", [*self.upstream, *self.downstream]
        )
        return [i for i in dict.fromkeys(ids) if self.nodes[i].kind == "execution"]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready): root, nodes, edges, upstream, downstream."""
        return {
            "root": self.root,
            "nodes": [{"id": n.id, "kind": n.kind, **n.attrs} for n in self.nodes.values()],
            "edges": [
                {"source": e.source, "target": e.target, "kind": e.kind, "name": e.name}
                for e in self.edges
            ],
            "upstream": list(self.upstream),
            "downstream": list(self.downstream),
        }

    def __repr__(self) -> str:
        return (
            f"Lineage(root={self.root!r}, {len(self.upstream)} upstream, "
            f"{len(self.downstream)} downstream, {len(self.edges)} edges)"
        )


def datum_id(row: Mapping[str, Any]) -> str:
    """The node id of an artifact row's data."""
    if row.get("sha256"):
        return blob_uri(str(row["sha256"]))
    return str(row.get("uri") or f"{row['execution_id']}:{row.get('name')}")


class _Graph:
    """Indexes over the artifacts rows."""

    def __init__(self, artifacts: Iterable[Mapping[str, Any]]) -> None:
        self.inputs: dict[str, list[Mapping[str, Any]]] = {}
        self.outputs: dict[str, list[Mapping[str, Any]]] = {}
        self.producers: dict[str, list[str]] = {}
        self.consumers: dict[str, list[str]] = {}
        self.datum_rows: dict[str, Mapping[str, Any]] = {}
        for row in artifacts:
            datum = datum_id(row)
            self.datum_rows.setdefault(datum, row)
            execution = str(row["execution_id"])
            if row.get("direction") == "output":
                self.outputs.setdefault(execution, []).append(row)
                _add(self.producers, datum, execution)
            else:
                self.inputs.setdefault(execution, []).append(row)
                _add(self.consumers, datum, execution)


def _add(index: dict[str, list[str]], key: str, value: str) -> None:
    values = index.setdefault(key, [])
    if value not in values:
        values.append(value)


def build_lineage(
    root: str,
    root_kind: str,
    artifacts: Iterable[Mapping[str, Any]],
    executions: Mapping[str, Mapping[str, Any]],
) -> Lineage:
    """The lineage of an execution id or datum id over the artifacts rows.

    ``executions`` maps execution ids to attributes (step, status, counter) for the nodes.
    """
    graph = _Graph(artifacts)
    nodes: dict[str, LineageNode] = {}
    edges: dict[LineageEdge, None] = {}

    def node(node_id: str, kind: str) -> None:
        if node_id in nodes:
            return
        if kind == "execution":
            attrs = dict(executions.get(node_id, {}))
        else:
            row = graph.datum_rows.get(node_id, {})
            attrs = {k: row.get(k) for k in ("name", "size", "uri") if row.get(k) is not None}
        nodes[node_id] = LineageNode(node_id, kind, attrs)

    node(root, root_kind)

    def walk(step) -> list[str]:  # type: ignore[no-untyped-def]
        seen = {root}
        order: list[str] = []
        queue = deque([root])
        while queue:
            current = queue.popleft()
            for nxt, kind in step(current):
                node(nxt, kind)
                if nxt not in seen:
                    seen.add(nxt)
                    order.append(nxt)
                    queue.append(nxt)
        return order

    def up(current: str) -> list[tuple[str, str]]:
        found = []
        if nodes[current].kind == "execution":
            for row in graph.inputs.get(current, []):
                datum = datum_id(row)
                edges[LineageEdge(datum, current, "input", row.get("name"))] = None
                found.append((datum, "datum"))
                explicit = row.get("producer_execution_id")
                for producer in [explicit] if explicit else graph.producers.get(datum, []):
                    edges[
                        LineageEdge(producer, datum, "output", _output_name(graph, producer, datum))
                    ] = None
                    found.append((producer, "execution"))
        else:
            for producer in graph.producers.get(current, []):
                edges[
                    LineageEdge(producer, current, "output", _output_name(graph, producer, current))
                ] = None
                found.append((producer, "execution"))
        return found

    def down(current: str) -> list[tuple[str, str]]:
        found = []
        if nodes[current].kind == "execution":
            for row in graph.outputs.get(current, []):
                datum = datum_id(row)
                edges[LineageEdge(current, datum, "output", row.get("name"))] = None
                found.append((datum, "datum"))
        else:
            for consumer in graph.consumers.get(current, []):
                edges[
                    LineageEdge(current, consumer, "input", _input_name(graph, consumer, current))
                ] = None
                found.append((consumer, "execution"))
        return found

    upstream = walk(up)
    downstream = walk(down)
    return Lineage(root, nodes, list(edges), upstream, downstream)


def _output_name(graph: _Graph, execution: str, datum: str) -> str | None:
    return next(
        (r.get("name") for r in graph.outputs.get(execution, []) if datum_id(r) == datum), None
    )


def _input_name(graph: _Graph, execution: str, datum: str) -> str | None:
    return next(
        (r.get("name") for r in graph.inputs.get(execution, []) if datum_id(r) == datum), None
    )
