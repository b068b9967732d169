"""A pipeline as a checked DAG, and what flows along its edges.

:meth:`PipelineGraph.build` resolves every node of a valohai.yaml pipeline to the step it
runs (:meth:`sweeper.config.Step.with_override` applies the node's ``override``) and
refuses, before anything runs, a pipeline that :meth:`sweeper.config.Pipeline.check` finds
an error in, or a warning that blocks a run (edge types that cannot be joined, cycles,
``require-approval``, nodes pinned to another commit): the rules live in the config layer
only, so ``sweep lint`` and ``sweep pipeline run`` give the same verdict and the same
messages. A deployment node is resolved to no step: it makes a version of its
``deployment`` (:mod:`sweeper.pipeline.deploying`).

Edges, as Valohai defines them (``[source, target]``, each ``node.type.key``):

=====================================================  ====================================
``[a.output.model*, b.input.model]``                   files of ``a`` matching the glob
``[a.input.data, b.input.data]``                       the files ``a`` got as input ``data``
``[a.parameter.lr, b.parameter.lr]``                   ``a``'s parameter value
``[a.metadata.acc, b.parameter.threshold]``            the latest value ``a`` printed
``[a.metadata.acc, b.environment-variable.ACC]``       the same, as an environment variable
``[a.dependency.x, b.dependency.x]``                   ordering only
``[a.output.model*, d.file.predict.model]``            a deployment node's endpoint file
``[d.deployment.id, b.parameter.name]``                what deployment node ``d`` deployed:
                                                       ``id`` (the deployment's name),
                                                       ``version_id``, ``version`` (``v3``),
                                                       ``url.ENDPOINT`` (the version's URL)
=====================================================  ====================================

Output files are passed as ``execution://<id>/outputs/<path>`` URIs, which the inputs layer
resolves from the store (by sha256) and records with ``producer_execution_id``: lineage.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sweeper.config import Config, Edge, Node, Parameter, Pipeline, Step, Task
from sweeper.config.problems import Problems
from sweeper.errors import ConfigError, SweeperError
from sweeper.record import ExecutionRecord
from sweeper.status import Status

#: Why a deployment node takes no ``-p`` or ``--input``: it runs no step.
DEPLOYMENT_RUNS_NO_STEP = "a deployment node runs no step (it takes files through edges)"


class PipelineError(SweeperError):
    """A pipeline cannot run as written: a bad edge, a cycle, a missing node or value."""


def describe_edge(edge: Edge) -> str:
    """An edge as the user wrote it, with its line when known."""
    return edge.describe()


def _node_step_names(config: Config, pipeline: Pipeline) -> dict[str, str]:
    """The step each node runs here, by node name (deployment nodes run none)."""
    names: dict[str, str] = {}
    for node in pipeline.nodes:
        if node.type == "deployment" or node.commit:
            continue
        if node.task is not None:
            task = config.tasks.get(node.task)
            if task is not None:
                names[node.name] = task.step
        elif node.step is not None:
            names[node.name] = node.step
    return names


@dataclass(frozen=True)
class NodePlan:
    """One node, resolved: the step it runs (override applied; ``None`` for a deployment
    node) and, for a task node, its task."""

    node: Node
    step: Step | None
    task: Task | None = None

    @property
    def name(self) -> str:
        """The node's name."""
        return str(self.node.name)

    @property
    def run_step(self) -> Step:
        """The step the node runs; :class:`PipelineError` for a deployment node, which runs none."""
        if self.step is None:
            raise PipelineError(f'node "{self.name}": {DEPLOYMENT_RUNS_NO_STEP}')
        return self.step

    @property
    def is_task(self) -> bool:
        """Whether the node runs several executions (a task) rather than one."""
        return bool(self.node.type == "task")

    def input_merge_mode(self, input_name: str) -> str:
        """``replace`` or ``append``: the input's own edge-merge-mode, else the node's."""
        for item in self.step.inputs if self.step is not None else ():
            if item.name == input_name and item.edge_merge_mode:
                return str(item.edge_merge_mode)
        return str(self.node.edge_merge_mode or "replace")


class PipelineGraph:
    """The checked DAG of one pipeline (see the module docstring)."""

    def __init__(
        self, pipeline: Pipeline, plans: dict[str, NodePlan], order: tuple[str, ...]
    ) -> None:
        self.pipeline = pipeline
        self.plans = plans
        self.order = order

    @property
    def name(self) -> str:
        """The pipeline's name."""
        return str(self.pipeline.name)

    def _label(self, node: str) -> str:
        return f'pipeline "{self.name}": node "{node}"'

    # -- building and checking -----------------------------------------------------------

    @classmethod
    def build(cls, config: Config, pipeline_name: str) -> PipelineGraph:
        """Resolve pipeline ``pipeline_name`` of ``config``; :class:`PipelineError` with the
        problems ``sweep lint`` reports if it has an error or a warning that blocks a run."""
        try:
            pipeline = config.get_pipeline(pipeline_name)
            steps = _node_step_names(config, pipeline)
            for step_name in steps.values():
                if ("step", step_name) in config.broken:
                    config.get_step(step_name)  # raises the step's own errors
            for node in pipeline.nodes:
                if node.task is not None and node.task in config.tasks:
                    config.get_task(node.task)  # raises what stops the task from running
        except ConfigError as exc:
            raise PipelineError(str(exc)) from None
        problems = Problems(config.filename)
        pipeline.check(config.steps, config.tasks, problems)
        blocking = [p for p in problems.sorted() if p.level == "error" or p.blocks_run]
        if blocking:
            raise PipelineError("\n".join(str(p) for p in blocking))
        plans: dict[str, NodePlan] = {}
        for node in pipeline.nodes:
            if node.name not in steps:
                plans[node.name] = NodePlan(node=node, step=None)
                continue
            step = config.get_step(steps[node.name]).with_override(node.override)
            task = config.tasks[node.task] if node.task else None
            plans[node.name] = NodePlan(node=node, step=step, task=task)
        return cls(pipeline, plans, pipeline.topological_order())

    def check_required_inputs(self, given: Mapping[str, Mapping[str, Sequence[str]]]) -> None:
        """Fail before anything runs when a required input has no default, edge or ``--input``."""
        for name, plan in self.plans.items():
            fed = {e.target_key for e in self.edges_into(name) if e.target_type == "input"}
            for item in plan.step.inputs if plan.step is not None else ():
                if (
                    item.optional
                    or item.default
                    or item.name in fed
                    or given.get(name, {}).get(item.name)
                ):
                    continue
                raise PipelineError(
                    f'{self._label(name)}: input "{item.name}" of step "{plan.run_step.name}" is required '
                    f"but has no default, no edge into it and no --input {name}.{item.name}=URI"
                )

    # -- structure -----------------------------------------------------------------------

    def edges_into(self, name: str) -> tuple[Any, ...]:
        """The edges whose target is node ``name``."""
        return tuple(e for e in self.pipeline.edges if e.target_node == name)

    def predecessors(self, name: str) -> tuple[str, ...]:
        """Nodes with any edge (dependency included) into ``name``."""
        return tuple(dict.fromkeys(e.source_node for e in self.edges_into(name)))

    def descendants(self, name: str) -> set[str]:
        """Every node reachable from ``name`` along edges."""
        found: set[str] = set()
        frontier = [name]
        while frontier:
            current = frontier.pop()
            for edge in self.pipeline.edges:
                if edge.source_node == current and edge.target_node not in found:
                    found.add(edge.target_node)
                    frontier.append(edge.target_node)
        return found

    # -- values --------------------------------------------------------------------------

    def parameter_values(
        self,
        cli: Mapping[str, Sequence[str]],
    ) -> dict[str, dict[str, Any]]:
        """Typed parameter values per node from pipeline parameters and ``-p`` options.

        ``cli`` maps ``NAME`` (a pipeline parameter) or ``NODE.PARAM`` to the texts given;
        pipeline parameter defaults apply where ``-p`` gives nothing. Node values win over
        pipeline parameters. A list value (a pipeline parameter default list, or ``-p``
        repeated) aimed at a task node becomes one of its variant axes.
        """
        values: dict[str, dict[str, Any]] = {n: {} for n in self.plans}
        by_name = {p.name: p for p in self.pipeline.parameters}
        for name in cli:
            if name not in by_name and "." not in name:
                known = ", ".join(by_name) or "(none)"
                raise PipelineError(
                    f'pipeline "{self.name}": -p {name}: no pipeline parameter "{name}" '
                    f"(known: {known}); set a node's parameter with -p NODE.PARAMETER=VALUE"
                )
        for parameter in self.pipeline.parameters:
            for node, pname in parameter.sockets:
                step_parameter = self.plans[node].run_step.get_parameter(pname)
                texts = cli.get(parameter.name)
                what = f'pipeline parameter "{parameter.name}" -> {node}.parameter.{pname}'
                if texts is not None:
                    values[node][pname] = self._typed_texts(node, step_parameter, texts, what)
                elif parameter.default is not None:
                    values[node][pname] = self._typed(node, step_parameter, parameter.default, what)
        for name, texts in cli.items():
            if name in by_name:
                continue
            node, pname = self._node_socket(name, f"-p {name}")
            plan = self.plans[node]
            if pname not in {p.name for p in plan.run_step.parameters}:
                known = ", ".join(p.name for p in plan.run_step.parameters) or "(none)"
                raise PipelineError(
                    f'{self._label(node)}: -p {name}: step "{plan.run_step.name}" has no parameter "{pname}"; known parameters: {known}'
                )
            values[node][pname] = self._typed_texts(
                node, plan.run_step.get_parameter(pname), texts, f"-p {name}"
            )
        return values

    def _node_socket(self, text: str, what: str) -> tuple[str, str]:
        """``NODE.PARAM`` (or ``NODE.parameter.PARAM``) of a node that runs a step."""
        parts = text.split(".", 2)
        if len(parts) == 2:
            parts = [parts[0], "parameter", parts[1]]
        if len(parts) != 3 or parts[1] not in ("parameter", "parameters") or not all(parts):
            raise PipelineError(
                f'pipeline "{self.name}": {what}: "{text}" must look like NODE.PARAMETER'
            )
        if parts[0] not in self.plans:
            known = ", ".join(self.plans) or "(none)"
            raise PipelineError(
                f'pipeline "{self.name}": {what}: node "{parts[0]}" does not exist; known nodes: {known}'
            )
        if self.plans[parts[0]].step is None:
            raise PipelineError(f"{self._label(parts[0])}: {what}: {DEPLOYMENT_RUNS_NO_STEP}")
        return parts[0], parts[2]

    def _typed_texts(self, node: str, parameter: Parameter, texts: Sequence[str], what: str) -> Any:
        try:
            if self.plans[node].is_task and len(texts) > 1 and parameter.multiple in (None, "none"):
                return [parameter.parse_value(t) for t in texts]
            return parameter.parse_values(list(texts))
        except SweeperError as exc:
            raise PipelineError(f"{self._label(node)}: {what}: {exc}") from None

    def _typed(self, node: str, parameter: Parameter, value: Any, what: str) -> Any:
        try:
            if isinstance(value, (list, tuple)) and parameter.multiple in (None, "none"):
                return [parameter.validate(v) for v in value]
            return parameter.validate(list(value) if isinstance(value, tuple) else value)
        except SweeperError as exc:
            raise PipelineError(f"{self._label(node)}: {what}: {exc}") from None

    def node_inputs(self, cli: Mapping[str, Sequence[str]]) -> dict[str, dict[str, list[str]]]:
        """``--input NODE.INPUT=URI`` options per node, checked against the node's step."""
        out: dict[str, dict[str, list[str]]] = {n: {} for n in self.plans}
        for key, uris in cli.items():
            node, sep, name = key.partition(".")
            if not sep or node not in self.plans:
                known = ", ".join(self.plans)
                raise PipelineError(
                    f'pipeline "{self.name}": --input {key}: use NODE.INPUT=URI with a node of: {known}'
                )
            step = self.plans[node].step
            if step is None:
                raise PipelineError(
                    f"{self._label(node)}: --input {key}: {DEPLOYMENT_RUNS_NO_STEP}"
                )
            if name not in {i.name for i in step.inputs}:
                known = ", ".join(i.name for i in step.inputs) or "(none)"
                raise PipelineError(
                    f'{self._label(node)}: --input {key}: step "{step.name}" has no input "{name}"; known inputs: {known}'
                )
            out[node][name] = list(uris)
        return out


@dataclass
class NodeOutcome:
    """What a finished node offers downstream: its execution records and the best one; for a
    deployment node, the values of its ``deployment.KEY`` edges instead."""

    records: list[ExecutionRecord] = field(default_factory=list)
    best: ExecutionRecord | None = None
    deployment: Mapping[str, str] = field(default_factory=dict)

    def flowing(self, mode: str) -> list[ExecutionRecord]:
        """The records whose outputs flow: the best one, or every complete one for ``append``."""
        if mode == "append":
            complete = [r for r in self.records if r.status is Status.COMPLETE]
            return complete or self.records
        if self.best is not None:
            return [self.best]
        return self.records[-1:]


@dataclass
class EdgeValues:
    """What a node's incoming edges give it."""

    parameters: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, list[str]] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    #: A deployment node's endpoint files, ``ENDPOINT.FILE`` -> ``EXEC_ID:OUTPUT``.
    files: dict[str, str] = field(default_factory=dict)


def matching_outputs(record: ExecutionRecord, pattern: str) -> list[dict[str, Any]]:
    """Outputs of an execution whose path (or file name) matches the glob ``pattern``."""
    found = []
    for item in record.outputs:
        path = str(item.get("path") or item.get("name") or "")
        if fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(
            path.rsplit("/", 1)[-1], pattern
        ):
            found.append(dict(item))
    return found


def _env_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def resolve_edges(
    graph: PipelineGraph, name: str, outcomes: Mapping[str, NodeOutcome]
) -> EdgeValues:
    """The parameters, input URIs and environment variables the edges into ``name`` carry.

    Raises :class:`PipelineError` naming the node and the edge when a source has no output
    matching the glob, or never printed the metadata key.
    """
    plan = graph.plans[name]
    values = EdgeValues()
    for edge in graph.edges_into(name):
        if "dependency" in (edge.source_type, edge.target_type):
            continue
        what = f'pipeline "{graph.name}": node "{name}": {describe_edge(edge)}'
        outcome = outcomes.get(edge.source_node)
        if edge.source_type == "deployment":
            _deployment_value(what, edge, plan, outcome or NodeOutcome(), values)
            continue
        if outcome is None or not outcome.records:
            raise PipelineError(
                f'{what}: node "{edge.source_node}" has no execution to take it from'
            )
        if edge.target_type == "file":
            values.files[edge.target_key] = _endpoint_file(what, edge, outcome)
            continue
        if edge.target_type == "input":
            mode = plan.input_merge_mode(edge.target_key)
            uris = values.inputs.setdefault(edge.target_key, [])
            for record in outcome.flowing(mode):
                uris += _edge_files(what, edge, record)
            continue
        record = outcome.best or outcome.records[-1]
        _put_value(what, edge, plan, _edge_value(what, edge, record), values)
    return values


def _put_value(what: str, edge: Edge, plan: NodePlan, value: Any, values: EdgeValues) -> None:
    """A value flowing into a parameter (typed by the step) or an environment variable."""
    if edge.target_type == "parameter":
        try:
            values.parameters[edge.target_key] = plan.run_step.get_parameter(
                edge.target_key
            ).validate(value)
        except SweeperError as exc:
            raise PipelineError(f"{what}: the value {value!r} does not fit: {exc}") from None
    elif edge.target_type == "environment-variable":
        values.environment[edge.target_key] = _env_text(value)
    else:
        raise PipelineError(
            f"{what}: a deployment value feeds a parameter or an environment variable, "
            f"not a {edge.target_type}"
        )


def _deployment_value(
    what: str, edge: Edge, plan: NodePlan, outcome: NodeOutcome, values: EdgeValues
) -> None:
    """``[d.deployment.KEY, ...]``: what deployment node ``d`` deployed (see the module)."""
    if edge.source_key not in outcome.deployment:
        known = ", ".join(outcome.deployment) or "none: it deployed nothing"
        raise PipelineError(
            f'{what}: deployment node "{edge.source_node}" has no value '
            f'"{edge.source_key}" (it has: {known})'
        )
    _put_value(what, edge, plan, outcome.deployment[edge.source_key], values)


def _endpoint_file(what: str, edge: Edge, outcome: NodeOutcome) -> str:
    """``[a.output.model*, d.file.ENDPOINT.FILE]``: the one output that becomes the file, as
    ``EXEC_ID:OUTPUT`` (pinned by its sha256 when the version is made)."""
    if edge.source_type != "output":
        raise PipelineError(f"{what}: an endpoint file comes from an output (a.output.NAME)")
    record = outcome.best or outcome.records[-1]
    uris = _edge_files(what, edge, record)
    if len(uris) != 1:
        raise PipelineError(
            f'{what}: {len(uris)} outputs of node "{edge.source_node}" match '
            f'"{edge.source_key}"; an endpoint file takes exactly one ({", ".join(uris)})'
        )
    return f"{record.id}:{uris[0].split('/outputs/', 1)[1]}"


def _edge_files(what: str, edge: Edge, record: ExecutionRecord) -> list[str]:
    if edge.source_type == "input":
        files = [i for i in record.inputs if i.get("name") == edge.source_key]
        return [str(f["uri"]) for f in files]
    found = matching_outputs(record, edge.source_key)
    if not found:
        have = ", ".join(str(o.get("path")) for o in record.outputs) or "none"
        raise PipelineError(
            f'{what}: execution {record.id} of node "{edge.source_node}" has no output '
            f'matching "{edge.source_key}" (its outputs: {have})'
        )
    return [f"execution://{record.id}/outputs/{o['path']}" for o in found]


def _edge_value(what: str, edge: Edge, record: ExecutionRecord) -> Any:
    if edge.source_type == "metadata":
        metrics = record.metrics
        if edge.source_key not in metrics:
            printed = ", ".join(sorted(metrics)) or "nothing"
            raise PipelineError(
                f'{what}: node "{edge.source_node}" (execution {record.id}) never printed the '
                f'metadata key "{edge.source_key}" (it printed: {printed})'
            )
        return metrics[edge.source_key]
    if edge.source_type == "environment-variable":
        environment = record.environment
        if edge.source_key not in environment:
            raise PipelineError(
                f'{what}: node "{edge.source_node}" has no environment variable "{edge.source_key}"'
            )
        return environment[edge.source_key]
    parameters = record.parameters
    if edge.source_key not in parameters:
        raise PipelineError(
            f'{what}: node "{edge.source_node}" has no value for parameter "{edge.source_key}"'
        )
    return parameters[edge.source_key]


def merge_inputs(
    plan: NodePlan, given: Mapping[str, Sequence[str]], from_edges: Mapping[str, Sequence[str]]
) -> dict[str, list[str]]:
    """Input URIs of a node: ``--input`` (else the default), replaced or extended by edges."""
    merged: dict[str, list[str]] = {}
    for item in plan.run_step.inputs:
        base = list(given[item.name]) if item.name in given else list(item.default)
        if item.name in from_edges:
            edge_uris = list(from_edges[item.name])
            merged[item.name] = (
                base + edge_uris if plan.input_merge_mode(item.name) == "append" else edge_uris
            )
        else:
            merged[item.name] = base
    return merged
