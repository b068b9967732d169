"""A pipeline's decisions, as a :class:`~sweeper.cluster.controller.Policy`: which node is
ready, what its edges give it, what its end means; the
:class:`~sweeper.cluster.controller.Controller` runs its executions on Ray actors.

``on-error``: ``stop-all`` (default) stops every running node and starts nothing more;
``stop-next`` skips the failed node's descendants and lets other branches finish;
``continue`` treats the failed node as done (downstream nodes run, the pipeline can still
complete); ``retry`` runs the node again, up to ``max_retries`` times, then stops all.

Actions: ``when`` node-starting / node-complete / node-error, ``if`` expressions over the
node's metadata and parameters (all must hold), ``then`` stop-pipeline (status
``stopped``), error-pipeline (status ``error``) or noop.

A deployment node runs no execution: :class:`~sweeper.pipeline.deploy_policy.DeployingPolicy`
adds them (:mod:`sweeper.pipeline.deploying` says where and how they deploy).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, cast

from sweeper.cluster import recovery
from sweeper.cluster.actors import ResourceShape
from sweeper.cluster.controller import ControllerView, Launch, Policy
from sweeper.cluster.distributed import GroupSlot
from sweeper.config import Node
from sweeper.errors import InputError, SweeperError
from sweeper.execution.ids import new_execution_id
from sweeper.execution.inputs import pin_latest
from sweeper.execution.runner import ExecutionContext
from sweeper.execution.spec import SpecTemplate
from sweeper.pipeline.graph import (
    NodeOutcome,
    NodePlan,
    PipelineError,
    PipelineGraph,
    merge_inputs,
    resolve_edges,
)
from sweeper.pipeline.plan import PipelinePlan
from sweeper.pipeline.result import PipelineResult
from sweeper.pipeline.state import Child, NodeState, PipelineState, utc_now
from sweeper.pipeline.tasks import group_size, stops_task, task_variants, task_verdict
from sweeper.record import ExecutionRecord
from sweeper.status import Status
from sweeper.store import RecordStore

#: Why a resumed run starts an execution again that a killed driver left running.
RESUME_REASON = "the pipeline driver stopped while it ran; re-run on resume"

#: How a node ended: its status, why (unless complete), and the execution that flows on.
Verdict = tuple[Status, str | None, ExecutionRecord | None]


class PipelinePolicy(Policy):
    """Nodes start when their predecessors allow it; each child execution is one launch.

    A node's children are its executions (one per variant for a task node); the key of a
    launch is ``(node, child index)``. The policy owns the run's :class:`PipelineState` and
    saves every change of a node or child through ``store`` before it matters, so a killed
    driver leaves enough to ``resume``. ``on_event`` is told what happens, a line each.
    """

    #: Pipelines prune nothing: no metric events are polled.
    poll_metrics = False

    def __init__(
        self,
        plan: PipelinePlan,
        store: RecordStore,
        *,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.plan = plan
        self.graph = plan.graph
        self.store = store
        self.state = (
            PipelineState.load(store, plan.run_id) if plan.resuming else PipelineState.new(plan)
        )
        #: The error that ended the run at run time (an edge that cannot be resolved).
        self.failure: PipelineError | None = None
        self._on_event = on_event
        self._templates: dict[str, SpecTemplate] = {}
        self._limits: dict[str, int] = {}
        self._outcomes: dict[str, NodeOutcome] = {}
        self._records = _Records(store)
        self._halted: Status | None = None
        self._cpus = 1.0
        self._view: ControllerView | None = None

    @property
    def finished(self) -> bool:
        """Whether the run has nothing left to do (a resumed run that completed)."""
        return self.plan.resuming and self.state.status == Status.COMPLETE

    def result(self) -> PipelineResult:
        """The run as it stands, typed (how it ended, once the controller returned)."""
        return self.state.result()

    # -- Policy --------------------------------------------------------------------------

    def shapes(self) -> Sequence[ResourceShape]:
        """Every step's shape: a node that could never fit fails the run before it starts."""
        return [ResourceShape.of_step(t.step) for t in self.plan.templates.values()]

    def start(self, view: ControllerView) -> None:
        """Save a new run, or settle what a killed driver left of a resumed one."""
        self._view = view
        self._cpus = view.cluster.largest("CPU") or 1.0
        if self.plan.resuming:
            groups = {n for n, p in self.graph.plans.items() if group_size(p) is not None}
            _recover(self.state, self.store, groups)
            self.state.status, self.state.error = Status.RUNNING, None
        self._save(row=True)
        self._event(f"pipeline run {self.plan.run_id} of {self.graph.name}")

    def ask(self, view: ControllerView, free: int) -> list[Launch]:
        """Start the nodes that are ready, then the pending executions of running nodes."""
        while self._halted is None:
            self._start_ready()
            launches, settled = self._submit(view, free)
            if launches or not settled:
                return launches
            # an execution failed before it could start: its node may have ended, and the
            # nodes after it may now be ready (or skipped)
        return []

    def exhausted(self) -> bool:
        """Always: an idle actor would hold CPUs that another step's shape may need.

        The next :meth:`ask` is answered first (an idle actor of the same shape is reused),
        so only actors that no pending execution wants are given back.
        """
        return True

    def on_result(self, view: ControllerView, key: Hashable, record: ExecutionRecord) -> None:
        """A child execution ended: retry it, stop its task, or finish its node."""
        name, index = _node_key(key)
        self._records.add(record)
        child = self.state.nodes[name].children[index]
        child.ended(record)
        reused = f", reused {child.reused_from}" if child.reused_from else ""
        self._event(f"node {name}: execution {record.id} {child.status}{reused}")
        plan = self.graph.plans[name]
        if self._retries(plan, child):
            child.again(retry=True)
            self._note(f"node {name}: retrying (attempt {child.attempt})")
            return
        if plan.is_task and self._halted is None and stops_task(plan, record):
            self._stop_node(name)
        self._child_done(name)

    def end(self, view: ControllerView, status: Status) -> Status:
        """Save how the run ended: complete, error, stopped or interrupted."""
        if status is Status.INTERRUPTED:
            self._halt(Status.INTERRUPTED, str(Status.INTERRUPTED), stop=False)
        else:
            status = self._final_status()
        if self.failure is not None:
            self.state.error = str(self.failure)
        self.state.status = status
        if status == Status.COMPLETE:
            self.state.error = None
        self._save(row=True)
        self._event(f"pipeline run {self.plan.run_id}: {status}")
        return status

    # -- events and saving ---------------------------------------------------------------

    def _event(self, text: str) -> None:
        if self._on_event is not None:
            self._on_event(text)

    def _save(self, *, row: bool = False) -> None:
        self.state.save(self.store, row=row)

    def _note(self, text: str, *, row: bool = False) -> None:
        """Tell what happened, then save it (with a ``pipeline_runs`` row for ``row``)."""
        self._event(text)
        self._save(row=row)

    # -- starting nodes ------------------------------------------------------------------

    def _start_ready(self) -> None:
        for name in self.graph.order:
            if self.state.nodes[name].status != Status.PENDING or self._halted is not None:
                continue
            waiting, blocked = _blocker(self.graph, self.state, name)
            if blocked is not None:
                reason = f'upstream node "{blocked}" did not complete'
                self._finish_node(name, Status.SKIPPED, reason)
            elif not waiting:
                self._start(name)

    def _start(self, name: str) -> None:
        plan = self.graph.plans[name]
        node = self.state.nodes[name]
        node.status = Status.RUNNING
        node.started_at = node.started_at or utc_now()
        node.error = None
        if plan.step is None:
            return self._start_deployment(name)
        try:
            parameters = self._prepare(plan, node)
        except PipelineError as exc:
            self.failure = self.failure or exc
            self._finish_node(name, Status.ERROR, str(exc))
            self._halt(Status.ERROR, str(exc))
            return
        kind = f"task of {len(node.children)} executions" if plan.is_task else "execution"
        self._note(f"node {name}: starting ({kind} of step {plan.run_step.name})")
        scalars = {k: v for k, v in parameters.items() if not isinstance(v, list)}
        if self._act(name, "node-starting", {}, scalars):
            return  # _halt marked this node stopped
        if all(c.status == Status.COMPLETE for c in node.children):
            self._node_done(name)  # finished while a killed driver was away

    def _start_deployment(self, name: str) -> None:
        """A deployment node starts: what :class:`DeployingPolicy` does (it runs no step)."""
        raise PipelineError(f'node "{name}": this policy runs no deployment node')

    def _prepare(self, plan: NodePlan, node: NodeState) -> dict[str, Any]:
        """Resolve a starting node's edges: its template, limit and children; its parameters."""
        name = plan.name
        outcomes = {p: self._outcome(p) for p in self.graph.predecessors(name)}
        edges = resolve_edges(self.graph, name, outcomes)
        parameters = {**self.plan.values[name], **edges.parameters}
        inputs = _pin(merge_inputs(plan, self.plan.cli_inputs[name], edges.inputs), self.store)
        if not node.children:
            variants = task_variants(plan, parameters) if plan.is_task else [parameters]
            node.children = [Child(index=i, parameters=v) for i, v in enumerate(variants)]
        self._templates[name] = self.plan.node_template(name, inputs, edges.environment)
        self._limits[name] = _node_limit(plan, self._cpus)
        return parameters

    def _outcome(self, name: str) -> NodeOutcome:
        if name not in self._outcomes:
            node = self.state.nodes[name]
            records = self._records.of(node)
            best = self._records.get(node.best_execution_id) if node.best_execution_id else None
            self._outcomes[name] = NodeOutcome(
                records, best or (records[-1] if records and node.type == "execution" else None)
            )
        return self._outcomes[name]

    # -- executions ----------------------------------------------------------------------

    def _submit(self, view: ControllerView, free: int) -> tuple[list[Launch], bool]:
        """Launches of pending children within each node's limit; and whether a child ended."""
        launches: list[Launch] = []
        settled = False
        busy: dict[str, int] = {}
        for key in view.in_flight:
            name = _node_key(key)[0]
            busy[name] = busy.get(name, 0) + 1
        for name in self.graph.order:
            if self.state.nodes[name].status != Status.RUNNING:
                continue
            for child in self.state.nodes[name].children:
                if self._halted is not None or len(launches) >= free:
                    return launches, settled
                if busy.get(name, 0) >= self._limits[name]:
                    break
                if child.status != Status.PENDING:
                    continue
                try:
                    launches.append(self._launch(name, child))
                except SweeperError as exc:
                    child.status, child.error = Status.ERROR, str(exc)
                    settled = True
                    self._child_done(name)
                    continue
                busy[name] = busy.get(name, 0) + 1
        return launches, settled

    def _launch(self, name: str, child: Child) -> Launch:
        plan = self.graph.plans[name]
        spec = self._templates[name].build(child.parameters)
        child.execution_id = new_execution_id()
        child.status = Status.RUNNING
        child.reused_from = child.error = None
        self._save()  # the id is durable before the execution can start
        return Launch(
            key=(name, child.index),
            spec=spec,
            context=ExecutionContext(
                pipeline_run_id=self.plan.run_id,
                node=name,
                attempt=child.attempt,
                trial_number=child.index if plan.is_task else None,
            ),
            execution_id=child.execution_id,
            reuse=self.plan.reuse,
            group=_group_slot(self.plan.run_id, plan, child),
        )

    def _retries(self, plan: NodePlan, child: Child) -> bool:
        """Whether a failed child runs again (``on-error: retry``, under ``max_retries``)."""
        return (
            child.status != Status.COMPLETE
            and plan.node.on_error == "retry"
            and self._halted is None
            and child.retries < self.plan.options.max_retries
            and group_size(plan) is None  # a group member never runs again alone
        )

    def _child_done(self, name: str) -> None:
        if any(c.active for c in self.state.nodes[name].children):
            self._save()
            return
        self._node_done(name)

    def _stop_node(self, name: str) -> None:
        """Stop a node's running executions and skip its pending ones."""
        self.state.nodes[name].skip_pending()
        if self._view is not None:
            for key in list(self._view.in_flight):
                if _node_key(key)[0] == name:
                    self._view.stop(key)

    # -- finishing nodes -----------------------------------------------------------------

    def _node_done(self, name: str) -> None:
        plan = self.graph.plans[name]
        node = self.state.nodes[name]
        records = self._records.of(node)
        halted = self._halted is not None
        if plan.is_task:
            status, error, best = task_verdict(plan, records, halted=halted)
        else:
            status, error, best = _execution_verdict(node, records, halted=halted)
        node.best_execution_id = best.id if best else None
        self._outcomes[name] = NodeOutcome(records, best)
        self._finish_node(name, status, error)
        if self._halted is not None:
            return
        metadata = dict(best.metrics) if best else {}
        parameters = dict(best.parameters) if best else {}
        if status == Status.COMPLETE:
            self._act(name, "node-complete", metadata, parameters)
        elif status == Status.ERROR:
            self._after_error(name, error, metadata, parameters)

    def _after_error(
        self,
        name: str,
        error: str | None,
        metadata: Mapping[str, Any],
        parameters: Mapping[str, Any],
    ) -> None:
        """A node failed: its node-error actions, then its on-error policy."""
        if self._act(name, "node-error", metadata, parameters):
            return
        on_error = self.graph.plans[name].node.on_error
        reason = f'node "{name}" failed: {error}'
        if on_error != "continue" and not self.state.error:
            self.state.error = reason
        if on_error == "stop-next":
            skipped = f'node "{name}" failed (on-error: stop-next)'
            for descendant in self.graph.descendants(name):
                if self.state.nodes[descendant].status == Status.PENDING:
                    self._finish_node(descendant, Status.SKIPPED, skipped)
        elif on_error != "continue":
            self._halt(Status.ERROR, reason)

    def _final_status(self) -> Status:
        if self._halted is not None:
            return self._halted
        passed = all(_passed(self.graph, self.state, name) for name in self.state.nodes)
        return Status.COMPLETE if passed else Status.ERROR

    def _finish_node(self, name: str, status: Status, error: str | None) -> None:
        self.state.nodes[name].finish(status, error)
        self._note(f"node {name}: {status}" + (f" ({error})" if error else ""), row=True)

    def _act(
        self, name: str, when: str, metadata: Mapping[str, Any], parameters: Mapping[str, Any]
    ) -> bool:
        """Run the node's actions for ``when``; True when one stopped the pipeline."""
        fired = _fired_action(self.graph.plans[name].node, when, metadata, parameters)
        if fired is None:
            return False
        self._halt(*fired)
        return True

    def _halt(self, status: Status, reason: str, *, stop: bool = True) -> None:
        """Stop the pipeline: stop running executions, skip what has not started.

        ``stop=False`` when the controller has already stopped them (Ctrl-C).
        """
        if self._halted is not None:
            return
        self._halted = status
        self.state.error = reason
        self._event(f"pipeline run {self.plan.run_id}: {status}: {reason}")
        if stop and self._view is not None:
            self._view.stop_all()
        for name, node in self.state.nodes.items():
            if node.status == Status.RUNNING:
                node.skip_pending()
                if not any(c.status == Status.RUNNING for c in node.children):
                    self._finish_node(name, Status.STOPPED, reason)
            elif node.status == Status.PENDING:
                self._finish_node(name, Status.SKIPPED, reason)


def _passed(graph: PipelineGraph, state: PipelineState, name: str) -> bool:
    """Whether node ``name`` lets the nodes after it run: complete, or failed with continue."""
    status = state.nodes[name].status
    return status == Status.COMPLETE or (
        status == Status.ERROR and graph.plans[name].node.on_error == "continue"
    )


def _blocker(graph: PipelineGraph, state: PipelineState, name: str) -> tuple[bool, str | None]:
    """(whether a predecessor of ``name`` has yet to end, the first that ended without passing)."""
    waiting = False
    for pred in graph.predecessors(name):
        if _passed(graph, state, pred):
            continue
        if state.nodes[pred].status in (Status.ERROR, Status.STOPPED, Status.SKIPPED):
            return waiting, pred
        waiting = True
    return waiting, None


def _node_key(key: Hashable) -> tuple[str, int]:
    """The ``(node, child index)`` a launch of this policy was keyed with."""
    return cast(tuple[str, int], key)


def _execution_verdict(node: NodeState, records: list[ExecutionRecord], *, halted: bool) -> Verdict:
    """How an execution node ended: as its last execution did (``stopped`` by a halt)."""
    best = records[-1] if records else None
    last = node.children[-1] if node.children else None
    if last is not None and last.status == Status.COMPLETE:
        return Status.COMPLETE, None, best
    error = (last.error if last else None) or "the execution failed"
    stopped = halted and last is not None and last.status == Status.STOPPED
    return (Status.STOPPED if stopped else Status.ERROR), error, best


def _fired_action(
    node: Node, when: str, metadata: Mapping[str, Any], parameters: Mapping[str, Any]
) -> tuple[Status, str] | None:
    """The halt the first of the node's ``when`` actions that holds asks for, if any."""
    for action in node.actions:
        if when not in action.when:
            continue
        if not all(condition.evaluate(metadata, parameters) for condition in action.if_):
            continue
        for then in action.then:
            if then in ("stop-pipeline", "error-pipeline"):
                status = Status.STOPPED if then == "stop-pipeline" else Status.ERROR
                conditions = " and ".join(c.text for c in action.if_) or "always"
                return status, f'node "{node.name}": {when} action ({conditions}): {then}'
    return None


class _Records:
    """The execution records the policy has read or been told, by id (read once each)."""

    def __init__(self, store: RecordStore) -> None:
        self._store = store
        self._by_id: dict[str, ExecutionRecord] = {}

    def add(self, record: ExecutionRecord) -> None:
        """Keep a record the controller reported."""
        self._by_id[record.id] = record

    def get(self, execution_id: str) -> ExecutionRecord | None:
        """An execution's record, from the store the first time (None if it wrote none)."""
        if execution_id not in self._by_id:
            record = recovery.read_record(self._store, execution_id)
            if record is None:
                return None
            self._by_id[execution_id] = record
        return self._by_id[execution_id]

    def of(self, node: NodeState) -> list[ExecutionRecord]:
        """The records of a node's latest executions."""
        return [r for r in (self.get(i) for i in node.execution_ids) if r is not None]


def _node_limit(plan: NodePlan, cpus: float) -> int:
    """How many executions of a node run at once: one, or a task's queue or CPU share.

    A task node runs its ``maximum-queued-executions`` (else ``execution-batch-size``), else
    as many as its step's CPUs fit in ``cpus`` (the cluster's largest node).
    """
    task = plan.task
    if not plan.is_task:
        return 1
    size = group_size(plan)
    if size is not None:  # every member at once, or none
        return size
    cap = (task.maximum_queued_executions or task.execution_batch_size) if task else None
    step_cpus = ResourceShape.of_step(plan.run_step).cpus
    return int(cap or max(1, cpus // max(step_cpus, 1e-9)))


def _pin(inputs: Mapping[str, list[str]], store: RecordStore) -> dict[str, list[str]]:
    """``inputs`` with each ``dataset://NAME/latest`` as the version it means as the node
    starts: after its upstream nodes (one may have made it), and one version for all of its
    executions (a task's children start at different times). No such version yet: left as
    it is, so each execution records that error as it starts."""
    try:
        pinned = pin_latest(inputs, store)
    except InputError:
        return dict(inputs)
    return dict(inputs) if pinned is None else {k: list(v) for k, v in pinned.items()}


def _group_slot(run_id: str, plan: NodePlan, child: Child) -> GroupSlot | None:
    """A distributed task node's child is member ``index`` of the node's group (one per try)."""
    size = group_size(plan)
    if size is None:
        return None
    # a group the cluster cannot hold fails its node alone; the node's on-error decides the rest
    return GroupSlot(
        f"task-{run_id}-{plan.name}-{child.attempt}", size, child.index, fails_alone=True
    )


def _recover(state: PipelineState, store: RecordStore, groups: set[str]) -> None:
    """Keep complete nodes and executions of a resumed run; make everything else run again.

    A child whose execution completed while the driver was away is kept; one left unfinished
    is settled through :mod:`sweeper.cluster.recovery` (finished as ``crashed``) and runs
    again as its next attempt. A node of ``groups`` (distributed) is kept only whole.
    """
    for node in state.nodes.values():
        if node.status == Status.COMPLETE:
            continue
        for child in node.children:
            record = recovery.settle(store, child.execution_id) if child.execution_id else None
            if record is not None and record.status is Status.COMPLETE:
                child.status, child.reused_from = Status.COMPLETE, record.reused_from
            elif child.execution_id is None:
                child.status = Status.PENDING
            else:
                if record is not None:
                    recovery.crash(store, record, RESUME_REASON)
                child.again(retry=False)
        if node.name in groups and any(c.status != Status.COMPLETE for c in node.children):
            _regroup(node)
        node.reset()


def _regroup(node: NodeState) -> None:
    """A distributed node left half-finished runs again whole, as one new group: every member
    a new execution (a lone member would wait for peers that are gone, as Valohai runs a
    group as one unit); the earlier executions' records stay as history."""
    attempt = max(c.attempt for c in node.children) + 1
    for child in node.children:
        child.status, child.attempt = Status.PENDING, attempt
        child.retries, child.reused_from = 0, None
