"""Pipelines (alias: blueprints): nodes joined by edges, run as a directed acyclic graph."""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sweeper.config.edge import Edge, split_socket
from sweeper.config.fields import SCALAR_TYPES, Fields
from sweeper.config.loader import YamlList, YamlMap
from sweeper.config.node import Node
from sweeper.config.problems import Problems, quoted
from sweeper.errors import ConfigError

if TYPE_CHECKING:
    from sweeper.config.step import Step
    from sweeper.config.task import Task

_KEYS = ("name", "nodes", "edges", "parameters", "reuse-executions")
_PARAMETER_KEYS = ("name", "default", "value", "targets", "target", "description", "category")


@dataclass(frozen=True, kw_only=True)
class PipelineParameter:
    """A pipeline-level parameter whose value is given to node parameters (``targets``,
    each ``node.parameter.name``). ``value`` is read as ``default``."""

    name: str
    default: Any = None
    targets: tuple[str, ...] = ()
    description: str | None = None
    category: str | None = None
    line: int | None = field(default=None, compare=False, repr=False)

    def __hash__(self) -> int:
        return hash((self.name, self.targets))

    @classmethod
    def parse(cls, data: YamlMap, problems: Problems) -> PipelineParameter | None:
        """Parse one item of a pipeline's ``parameters``."""
        label = quoted(data["name"]) if isinstance(data.get("name"), str) else "(unnamed)"
        f = Fields(data, problems, prefix=f"pipeline parameter {label}: ", allowed=_PARAMETER_KEYS)
        name = f.name()
        if "target" in f and "targets" in f:
            f.error("target", 'use either "target" or "targets", not both')
        targets = f.string_list("targets", allow_single=True) if "targets" in f else ()
        if "target" in f:
            single = f.string("target")
            targets = (single,) if single is not None else ()
        if "targets" not in f and "target" not in f:
            f.error(None, 'missing required key "targets"')
        for target in targets:
            split = split_socket(target)
            if split is None or split[1] != "parameter":
                f.error(
                    "targets" if "targets" in f else "target",
                    f"target {quoted(target)} must look like node.parameter.name",
                )
        default = f.raw("value") if "value" in f else f.raw("default")
        if "value" in f and "default" in f:
            f.warning("value", '"value" overrides "default"')
        atoms = list(default) if isinstance(default, YamlList) else [default]
        if any(a is not None and not isinstance(a, SCALAR_TYPES) for a in atoms):
            f.error("default", "default must be a plain value or a list of them")
            default = None
        if name is None:
            return None
        return cls(
            name=name,
            default=tuple(default) if isinstance(default, YamlList) else default,
            targets=targets,
            description=f.string("description"),
            category=f.string("category"),
            line=f.line,
        )

    def serialize(self) -> dict[str, Any]:
        """This parameter as valohai.yaml data."""
        data: dict[str, Any] = {"name": self.name, "targets": list(self.targets)}
        if self.default is not None:
            data["default"] = (
                list(self.default) if isinstance(self.default, tuple) else self.default
            )
        if self.description is not None:
            data["description"] = self.description
        if self.category is not None:
            data["category"] = self.category
        return data


@dataclass(frozen=True, kw_only=True)
class Pipeline:
    """A pipeline: ``nodes`` joined by ``edges``; ``parameters`` feed node parameters.

    :meth:`topological_order` gives the order nodes can run in (declaration order among
    nodes that are ready at the same time).
    """

    name: str
    nodes: tuple[Node, ...] = ()
    edges: tuple[Edge, ...] = ()
    parameters: tuple[PipelineParameter, ...] = ()
    reuse_executions: bool = False
    line: int | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, data: YamlMap, problems: Problems) -> Pipeline | None:
        """Parse the mapping under a top-level ``pipeline`` (or ``blueprint``) key."""
        label = quoted(data["name"]) if isinstance(data.get("name"), str) else "(unnamed)"
        f = Fields(data, problems, prefix=f"pipeline {label}: ", allowed=_KEYS)
        name = f.name()
        f.require("nodes")
        if "edges" not in data:
            f.error(None, 'missing required key "edges" (write "edges: []" if there are none)')
        nodes: dict[str, Node] = {}
        for _, item in f.items("nodes"):
            node = Node.parse(item, problems)
            if node is None:
                continue
            if node.name in nodes:
                problems.error(
                    node.line,
                    f"pipeline {label}: node {quoted(node.name)} is defined more than once "
                    f"(first at line {nodes[node.name].line})",
                )
                continue
            nodes[node.name] = node
        edges: list[Edge] = []
        raw_edges = f.sequence("edges")
        for index, item in enumerate(raw_edges or []):
            assert raw_edges is not None
            edge = Edge.parse(item, raw_edges.line_of(index), problems)
            if edge is not None:
                edges.append(edge)
        parameters: dict[str, PipelineParameter] = {}
        for _, item in f.items("parameters"):
            parameter = PipelineParameter.parse(item, problems)
            if parameter is None:
                continue
            if parameter.name in parameters:
                problems.error(
                    parameter.line,
                    f"pipeline {label}: parameter {quoted(parameter.name)} is defined more than once",
                )
                continue
            parameters[parameter.name] = parameter
        reuse = f.boolean("reuse-executions", False)
        if name is None:
            return None
        pipeline = cls(
            name=name,
            nodes=tuple(nodes.values()),
            edges=tuple(edges),
            parameters=tuple(parameters.values()),
            reuse_executions=reuse,
            line=f.line,
        )
        pipeline._check_graph(problems)
        return pipeline

    # --- graph ---------------------------------------------------------------------------

    def get_node(self, name: str) -> Node:
        """The node called ``name``; :class:`ConfigError` naming the known ones otherwise."""
        for node in self.nodes:
            if node.name == name:
                return node
        known = ", ".join(n.name for n in self.nodes) or "(none)"
        raise ConfigError(
            f"pipeline {quoted(self.name)} has no node {quoted(name)}; known nodes: {known}"
        )

    def predecessors(self, name: str) -> tuple[str, ...]:
        """Names of the nodes with an edge into ``name`` (no repeats, in edge order)."""
        return tuple(dict.fromkeys(e.source_node for e in self.edges if e.target_node == name))

    def successors(self, name: str) -> tuple[str, ...]:
        """Names of the nodes that ``name`` has an edge into (no repeats, in edge order)."""
        return tuple(dict.fromkeys(e.target_node for e in self.edges if e.source_node == name))

    def edges_into(self, name: str) -> tuple[Edge, ...]:
        """The edges whose target is node ``name``."""
        return tuple(e for e in self.edges if e.target_node == name)

    def edges_from(self, name: str) -> tuple[Edge, ...]:
        """The edges whose source is node ``name``."""
        return tuple(e for e in self.edges if e.source_node == name)

    def _order(self) -> tuple[list[str], list[str]]:
        """Kahn's algorithm, ready nodes taken in declaration order: (order, nodes in cycles)."""
        index = {n.name: i for i, n in enumerate(self.nodes)}
        waiting: dict[str, set[str]] = {n.name: set() for n in self.nodes}
        for edge in self.edges:
            if edge.source_node in index and edge.target_node in index:
                waiting[edge.target_node].add(edge.source_node)
        dependents: dict[str, list[str]] = {name: [] for name in index}
        for name, sources in waiting.items():
            for source in sources:
                dependents[source].append(name)
        ready = [(index[name], name) for name, sources in waiting.items() if not sources]
        heapq.heapify(ready)
        order: list[str] = []
        while ready:
            _, name = heapq.heappop(ready)
            order.append(name)
            for dependent in dependents[name]:
                waiting[dependent].discard(name)
                if not waiting[dependent]:
                    heapq.heappush(ready, (index[dependent], dependent))
        done = set(order)
        return order, [n.name for n in self.nodes if n.name not in done]

    def topological_order(self) -> tuple[str, ...]:
        """Node names in an order that runs every node after all nodes it depends on.

        Raises :class:`ConfigError` if the edges form a cycle.
        """
        order, stuck = self._order()
        if stuck:
            raise ConfigError(
                f"pipeline {quoted(self.name)} has a cycle through nodes {', '.join(stuck)}"
            )
        return tuple(order)

    def levels(self) -> tuple[tuple[str, ...], ...]:
        """Node names grouped into waves: each wave depends only on earlier waves."""
        order = self.topological_order()
        depth: dict[str, int] = {}
        for name in order:
            depth[name] = max(
                (depth[p] + 1 for p in self.predecessors(name) if p in depth), default=0
            )
        waves: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
        for name in order:
            waves[depth[name]].append(name)
        return tuple(tuple(w) for w in waves)

    def _check_graph(self, problems: Problems) -> None:
        prefix = f"pipeline {quoted(self.name)}: "
        names = {n.name for n in self.nodes}
        for edge in self.edges:
            for role, node in (("source", edge.source_node), ("target", edge.target_node)):
                if node not in names:
                    known = ", ".join(n.name for n in self.nodes) or "(none)"
                    problems.error(
                        edge.line,
                        f"{prefix}edge {role} node {quoted(node)} does not exist; known nodes: {known}",
                    )
        _, stuck = self._order()
        if stuck:
            problems.error(
                self.line, f"{prefix}the edges form a cycle through nodes {', '.join(stuck)}"
            )
        for parameter in self.parameters:
            for target in parameter.targets:
                split = split_socket(target)
                if split is not None and split[0] not in names:
                    problems.error(
                        parameter.line,
                        f"{prefix}parameter {quoted(parameter.name)}: target node {quoted(split[0])} does not exist",
                    )

    def check_references(
        self, steps: Mapping[str, Step], tasks: Mapping[str, Task], problems: Problems
    ) -> None:
        """Report nodes, edges and parameters that refer to steps, tasks, inputs or parameters
        that do not exist. Nodes pinned to another ``commit`` are not checked."""
        prefix = f"pipeline {quoted(self.name)}: "
        node_steps: dict[str, Step] = {}
        for node in self.nodes:
            if node.commit or node.type == "deployment":
                continue
            step_name = node.step
            if node.task is not None:
                task = tasks.get(node.task)
                if task is None:
                    known = ", ".join(tasks) or "(none)"
                    problems.error(
                        node.line,
                        f"{prefix}node {quoted(node.name)}: task {quoted(node.task)} does not exist; known tasks: {known}",
                    )
                    continue
                step_name = task.step
            if step_name is None:
                continue
            step = steps.get(step_name)
            if step is None:
                known = ", ".join(steps) or "(none)"
                problems.error(
                    node.line,
                    f"{prefix}node {quoted(node.name)}: step {quoted(step_name)} does not exist; known steps: {known}",
                )
                continue
            node_steps[node.name] = step
            parameter_names = {p.name for p in step.parameters}
            input_names = {i.name for i in step.inputs}
            for name in node.override_parameter_names:
                if name not in parameter_names:
                    problems.error(
                        node.line,
                        f"{prefix}node {quoted(node.name)}: override parameter {quoted(name)} does not exist in step {quoted(step.name)}",
                    )
            for name in node.override_input_names:
                if name not in input_names:
                    problems.error(
                        node.line,
                        f"{prefix}node {quoted(node.name)}: override input {quoted(name)} does not exist in step {quoted(step.name)}",
                    )
        for edge in self.edges:
            for role, node_name, kind, key in (
                ("source", edge.source_node, edge.source_type, edge.source_key),
                ("target", edge.target_node, edge.target_type, edge.target_key),
            ):
                step = node_steps.get(node_name)
                if step is None:
                    continue
                override = self._override_names(node_name, kind)
                if kind == "input" and key not in {i.name for i in step.inputs} | override:
                    known = ", ".join(i.name for i in step.inputs) or "(none)"
                    problems.error(
                        edge.line,
                        f"{prefix}edge {role} {quoted(edge.source if role == 'source' else edge.target)}: step {quoted(step.name)} has no input {quoted(key)}; known inputs: {known}",
                    )
                if kind == "parameter" and key not in {p.name for p in step.parameters} | override:
                    known = ", ".join(p.name for p in step.parameters) or "(none)"
                    problems.error(
                        edge.line,
                        f"{prefix}edge {role} {quoted(edge.source if role == 'source' else edge.target)}: step {quoted(step.name)} has no parameter {quoted(key)}; known parameters: {known}",
                    )
        for parameter in self.parameters:
            for target in parameter.targets:
                split = split_socket(target)
                if split is None or split[1] != "parameter" or split[0] not in node_steps:
                    continue
                step = node_steps[split[0]]
                if split[2] not in {p.name for p in step.parameters} | self._override_names(
                    split[0], "parameter"
                ):
                    problems.error(
                        parameter.line,
                        f"{prefix}parameter {quoted(parameter.name)}: target {quoted(target)}: step {quoted(step.name)} has no parameter {quoted(split[2])}",
                    )

    def _override_names(self, node_name: str, kind: str) -> set[str]:
        for node in self.nodes:
            if node.name == node_name:
                if kind == "input":
                    return set(node.override_input_names)
                if kind == "parameter":
                    return set(node.override_parameter_names)
        return set()

    def serialize(self) -> dict[str, Any]:
        """This pipeline as valohai.yaml data."""
        data: dict[str, Any] = {
            "name": self.name,
            "nodes": [n.serialize() for n in self.nodes],
            "edges": [e.serialize() for e in self.edges],
        }
        if self.parameters:
            data["parameters"] = [p.serialize() for p in self.parameters]
        if self.reuse_executions:
            data["reuse-executions"] = True
        return data


__all__ = ["Pipeline", "PipelineParameter"]
