"""Pipelines (alias: blueprints): nodes joined by edges, run as a directed acyclic graph."""

from __future__ import annotations

import difflib
import fnmatch
import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sweeper.config.edge import EDGE_RULES, Edge, split_socket
from sweeper.config.fields import SCALAR_TYPES, Fields
from sweeper.config.loader import YamlList, YamlMap
from sweeper.config.named import get_by_name, unique_by_name
from sweeper.config.node import Node
from sweeper.config.problems import Problems, listed, quoted
from sweeper.errors import ConfigError

if TYPE_CHECKING:
    from sweeper.config.step import Step
    from sweeper.config.task import Task

_KEYS = ("name", "nodes", "edges", "parameters", "reuse-executions")
_PARAMETER_KEYS = ("name", "default", "targets", "target", "description", "category")


def target_socket(target: str) -> tuple[str, str] | None:
    """``node.parameter.name`` (Valohai also reads ``node.parameters.name``) -> (node, name)."""
    split = split_socket(target)
    if split is None or split[1] not in ("parameter", "parameters"):
        return None
    return split[0], split[2]


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
        f = Fields.named(data, problems, "pipeline parameter", allowed=_PARAMETER_KEYS)
        name = f.name()
        if "target" in f and "targets" in f:
            f.error("target", 'use either "target" or "targets", not both')
        targets = f.string_list("targets", allow_single=True) if "targets" in data else ()
        if data.get("targets") == "":
            targets = ()  # Valohai reads an empty text as no targets
        if "target" in f:
            single = f.string("target")
            targets = (single,) if single is not None else ()
        null_targets = "targets" in data and data["targets"] is None  # an error already
        if not targets and "target" not in data and not null_targets:
            f.warning(None, "no targets: the parameter is given to no node")
        for target in targets:
            if target_socket(target) is None:
                f.error(
                    "targets" if "targets" in f else "target",
                    f"target {quoted(target)} must look like node.parameter.name",
                )
        default = f.raw("default")
        atoms = list(default) if isinstance(default, YamlList) else [default]
        if any(a is not None and not isinstance(a, SCALAR_TYPES) for a in atoms):
            problems.warning(
                f.line_of("default"),
                f"{f.prefix}default must be a plain value or a list of them",
                blocks_run=True,
            )
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

    @property
    def sockets(self) -> tuple[tuple[str, str], ...]:
        """The well-formed targets as (node, parameter) pairs."""
        return tuple(s for t in self.targets if (s := target_socket(t)) is not None)

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
        f = Fields.named(data, problems, "pipeline", allowed=_KEYS)
        name = f.name()
        f.require("nodes")
        if "edges" not in data:
            f.error(None, 'missing required key "edges" (write "edges: []" if there are none)')
        nodes = unique_by_name(
            (node for _, item in f.items("nodes") if (node := Node.parse(item, problems))),
            lambda node, first: problems.error(
                node.line,
                f"{f.prefix}node {quoted(node.name)} is defined more than once "
                f"(first at line {first.line})",
            ),
            keep="first",
        )
        edges: list[Edge] = []
        raw_edges = f.sequence("edges")
        for index, item in enumerate(raw_edges or []):
            assert raw_edges is not None
            edge = Edge.parse(item, raw_edges.line_of(index), problems)
            if edge is not None:
                edges.append(edge)
        parameters = unique_by_name(
            (
                p
                for _, item in f.items("parameters")
                if (p := PipelineParameter.parse(item, problems))
            ),
            lambda parameter, _: problems.error(
                parameter.line,
                f"{f.prefix}parameter {quoted(parameter.name)} is defined more than once",
            ),
            keep="first",
        )
        reuse = f.boolean("reuse-executions", False)
        if name is None:
            return None
        return cls(
            name=name,
            nodes=nodes,
            edges=tuple(edges),
            parameters=parameters,
            reuse_executions=reuse,
            line=f.line,
        )

    # --- graph ---------------------------------------------------------------------------

    def get_node(self, name: str) -> Node:
        """The node called ``name``; :class:`ConfigError` naming the known ones otherwise."""
        return get_by_name(
            self.nodes,
            name,
            lambda known: (
                f"pipeline {quoted(self.name)} has no node {quoted(name)}; known nodes: {known}"
            ),
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
            # A node feeding itself is its own problem (reported apart), not a cycle.
            if (
                edge.source_node in index
                and edge.target_node in index
                and edge.source_node != edge.target_node
            ):
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

    def nodes_in_cycles(self) -> list[str]:
        """The nodes the edges hold in a cycle, in declaration order (none: it can run)."""
        return self._order()[1]

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

    # --- checks ----------------------------------------------------------------------------

    def check(
        self, steps: Mapping[str, Step], tasks: Mapping[str, Task], problems: Problems
    ) -> None:
        """Record every problem of this pipeline against the file's steps and tasks.

        The one place the pipeline rules live: ``sweep lint`` reports these, and ``sweep
        pipeline run`` refuses a pipeline with an error or a warning that ``blocks_run``
        (something Valohai accepts but sweeper cannot run), with the same messages.
        Errors are what valohai-yaml rejects too.
        """
        _PipelineCheck(self, steps, tasks, problems).run()

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


def _hint(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {quoted(close[0])}?)" if close else f"; known: {listed(known)}"


class _PipelineCheck:
    """The checks of :meth:`Pipeline.check`, one method per rule."""

    def __init__(
        self,
        pipeline: Pipeline,
        steps: Mapping[str, Step],
        tasks: Mapping[str, Task],
        problems: Problems,
    ) -> None:
        self.pipeline = pipeline
        self.steps = steps
        self.tasks = tasks
        self.problems = problems
        self.prefix = f"pipeline {quoted(pipeline.name)}: "
        self.nodes = {n.name: n for n in pipeline.nodes}
        self.node_steps: dict[str, Step] = {}

    def run(self) -> None:
        for node in self.pipeline.nodes:
            self.node(node)
        for edge in self.pipeline.edges:
            self.edge(edge)
        stuck = self.pipeline.nodes_in_cycles()
        if stuck:
            self.problems.warning(
                self.pipeline.line,
                f"{self.prefix}the edges form a cycle through nodes {', '.join(stuck)} "
                f"({'; '.join(e.describe() for e in self.pipeline.edges if e.source_node in stuck and e.target_node in stuck)}); "
                "sweeper cannot run it",
                blocks_run=True,
            )
        for parameter in self.pipeline.parameters:
            self.parameter(parameter)

    def node(self, node: Node) -> None:
        label = f"{self.prefix}node {quoted(node.name)}: "
        if node.type == "deployment":  # runs no step: sweeper.pipeline.deploying deploys it
            return
        for action in node.actions:
            if "require-approval" in action.then:
                self.problems.warning(
                    action.line,
                    f"{label}the action then: require-approval is not supported by sweeper "
                    "(there is no one to approve); use stop-pipeline or remove the action",
                    blocks_run=True,
                )
        if node.commit:
            self.problems.warning(
                node.line,
                f"{label}nodes pinned to another commit are not supported by sweeper",
                blocks_run=True,
            )
            return
        if node.task is not None and node.task not in self.tasks:
            known = listed(self.tasks)
            self.problems.error(
                node.line, f"{label}task {quoted(node.task)} does not exist; known tasks: {known}"
            )
            return
        step_name = self.tasks[node.task].step if node.task is not None else node.step
        if step_name is None:
            return
        step = self.steps.get(step_name)
        if step is None:
            known = listed(self.steps)
            self.problems.error(
                node.line,
                f"{label}step {quoted(step_name)} does not exist; known steps: {known}",
            )
            return
        self.node_steps[node.name] = step.with_override(
            node.override, problems=self.problems, line=node.line, prefix=label
        )

    def edge(self, edge: Edge) -> None:
        what = f"{self.prefix}{edge.describe(with_line=False)}: "
        missing = False
        for role, name in (("source", edge.source_node), ("target", edge.target_node)):
            if name not in self.nodes:
                known = listed(self.nodes)
                self.problems.error(
                    edge.line,
                    f"{what}{role} node {quoted(name)} does not exist; known nodes: {known}",
                )
                missing = True
        if missing:
            return
        if edge.source_node == edge.target_node:
            self.problems.warning(
                edge.line,
                f"{what}connects node {quoted(edge.source_node)} to itself; sweeper cannot run it",
                blocks_run=True,
            )
            return
        types = (edge.source_type, edge.target_type)
        deployment = any(
            self.nodes[n].type == "deployment" for n in (edge.source_node, edge.target_node)
        )
        if "dependency" in types or "deployment" in types or deployment:
            return
        allowed = EDGE_RULES.get(edge.target_type)
        if allowed is None or edge.source_type not in allowed:
            self.problems.warning(
                edge.line,
                f"{what}a {edge.source_type} cannot feed a {edge.target_type} in sweeper; "
                + "; ".join(f"a {t} takes {' or '.join(s)}" for t, s in EDGE_RULES.items()),
                blocks_run=True,
            )
            return
        self.socket(what, edge, edge.source_node, edge.source_type, edge.source_key)
        self.socket(what, edge, edge.target_node, edge.target_type, edge.target_key)

    def socket(self, what: str, edge: Edge, node: str, kind: str, key: str) -> None:
        """An edge end naming an input or parameter the node's step lacks: Valohai accepts
        it (the edge carries nothing), so it is a warning that points at the likely typo."""
        step = self.node_steps.get(node)
        if step is None or kind not in ("input", "parameter"):
            return
        names = (
            [i.name for i in step.inputs] if kind == "input" else [p.name for p in step.parameters]
        )
        if any(fnmatch.fnmatchcase(name, key) for name in names):
            return
        self.problems.warning(
            edge.line,
            f"{what}node {quoted(node)} (step {quoted(step.name)}) has no {kind} {quoted(key)}"
            + _hint(key, names),
            blocks_run=True,
        )

    def parameter(self, parameter: PipelineParameter) -> None:
        what = f"{self.prefix}parameter {quoted(parameter.name)}: "
        for node_name, name in parameter.sockets:
            node = self.nodes.get(node_name)
            if node is None:
                known = listed(self.nodes)
                self.problems.error(
                    parameter.line,
                    f"{what}target node {quoted(node_name)} does not exist; known nodes: {known}",
                )
                continue
            if node.type == "deployment":
                self.problems.warning(
                    parameter.line,
                    f"{what}target node {quoted(node_name)} is a deployment node, which takes no parameters",
                    blocks_run=True,
                )
                continue
            step = self.node_steps.get(node_name)
            names = [p.name for p in step.parameters] if step is not None else []
            if step is None or name in names:
                continue
            message = f"{what}target node {quoted(node_name)} (step {quoted(step.name)}) has no parameter {quoted(name)}{_hint(name, names)}"
            if node.type == "execution":
                self.problems.error(parameter.line, message)
            else:  # valohai-yaml does not check task nodes' targets
                self.problems.warning(parameter.line, message, blocks_run=True)


__all__ = ["Pipeline", "PipelineParameter", "target_socket"]
