"""Lineage: which executions produced an execution's inputs, and who consumed its outputs.

Executions and data ("datum://<sha256>") are the nodes; an edge runs from a datum to the
execution that read it (``input``) and from an execution to the datum it wrote (``output``).
A datum's producer is the ``producer_execution_id`` its consumer recorded, or else every
execution that output the same content. Both directions are followed recursively.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
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
        #: datum id -> the deployment versions serving it
        self.served: dict[str, list[Mapping[str, Any]]] = {}
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
    served: Iterable[Mapping[str, Any]] = (),
) -> Lineage:
    """The lineage of an execution id or datum id over the artifacts rows.

    ``executions`` maps execution ids to attributes (step, status, counter) for the nodes.
    ``served`` are the files deployment versions serve (``deployment``, ``version``,
    ``status``, ``sha256``, ``name``): a datum's downstream shows each version serving it
    (a node of kind ``deployment``, id ``deployment NAME VERSION``, edge ``serves``).
    """
    graph = _Graph(artifacts)
    for row in served:
        graph.served.setdefault(blob_uri(str(row["sha256"])), []).append(row)
    walk = _Walk(graph, executions)
    walk.node(root, root_kind)
    upstream = walk.breadth_first(root, walk.up)
    downstream = walk.breadth_first(root, walk.down)
    return Lineage(root, walk.nodes, list(walk.edges), upstream, downstream)


class _Walk:
    """The nodes and edges met while walking the graph from a root, up or down."""

    def __init__(self, graph: _Graph, executions: Mapping[str, Mapping[str, Any]]) -> None:
        self.graph = graph
        self.executions = executions
        self.nodes: dict[str, LineageNode] = {}
        self.edges: dict[LineageEdge, None] = {}

    def node(self, node_id: str, kind: str) -> None:
        """Meet a node (once), with its attributes."""
        if node_id in self.nodes:
            return
        if kind == "execution":
            attrs = dict(self.executions.get(node_id, {}))
        elif kind == "deployment":
            attrs = {}
        else:
            row = self.graph.datum_rows.get(node_id, {})
            attrs = {k: row.get(k) for k in ("name", "size", "uri") if row.get(k) is not None}
        self.nodes[node_id] = LineageNode(node_id, kind, attrs)

    def breadth_first(self, root: str, step: Callable[[str], list[tuple[str, str]]]) -> list[str]:
        """The ids reached from ``root`` by ``step`` (``up`` or ``down``), nearest first."""
        seen = {root}
        order: list[str] = []
        queue = deque([root])
        while queue:
            current = queue.popleft()
            for nxt, kind in step(current):
                self.node(nxt, kind)
                if nxt not in seen:
                    seen.add(nxt)
                    order.append(nxt)
                    queue.append(nxt)
        return order

    def up(self, current: str) -> list[tuple[str, str]]:
        """What ``current`` came from: an execution's inputs and their producers, a datum's
        producers (``(id, kind)`` each); the edges are kept."""
        graph, found = self.graph, []
        if self.nodes[current].kind == "execution":
            for row in graph.inputs.get(current, []):
                datum = datum_id(row)
                self.edges[LineageEdge(datum, current, "input", row.get("name"))] = None
                found.append((datum, "datum"))
                explicit = row.get("producer_execution_id")
                for producer in [explicit] if explicit else graph.producers.get(datum, []):
                    found.append(self._output(producer, datum))
        else:
            for producer in graph.producers.get(current, []):
                found.append(self._output(producer, current))
        return found

    def down(self, current: str) -> list[tuple[str, str]]:
        """What came from ``current``: an execution's outputs, a datum's consumers."""
        graph, found = self.graph, []
        if self.nodes[current].kind == "execution":
            for row in graph.outputs.get(current, []):
                datum = datum_id(row)
                self.edges[LineageEdge(current, datum, "output", row.get("name"))] = None
                found.append((datum, "datum"))
        else:
            for consumer in graph.consumers.get(current, []):
                name = _input_name(graph, consumer, current)
                self.edges[LineageEdge(current, consumer, "input", name)] = None
                found.append((consumer, "execution"))
            found += self._served(current)
        return found

    def _served(self, datum: str) -> list[tuple[str, str]]:
        """The deployment versions serving ``datum``; the ``serves`` edges are kept."""
        versions = []
        for row in self.graph.served.get(datum, []):
            version = f"deployment {row['deployment']} {row['version']} [{row['status']}]"
            self.edges[LineageEdge(datum, version, "serves", row.get("name"))] = None
            versions.append((version, "deployment"))
        return versions

    def _output(self, producer: str, datum: str) -> tuple[str, str]:
        """Keep the edge of ``producer`` making ``datum``; the producer to walk on to."""
        name = _output_name(self.graph, producer, datum)
        self.edges[LineageEdge(producer, datum, "output", name)] = None
        return producer, "execution"


def _output_name(graph: _Graph, execution: str, datum: str) -> str | None:
    return next(
        (r.get("name") for r in graph.outputs.get(execution, []) if datum_id(r) == datum), None
    )


def _input_name(graph: _Graph, execution: str, datum: str) -> str | None:
    return next(
        (r.get("name") for r in graph.inputs.get(execution, []) if datum_id(r) == datum), None
    )
