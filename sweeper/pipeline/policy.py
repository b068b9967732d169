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
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sweeper.cluster import recovery
from sweeper.cluster.actors import ResourceShape
from sweeper.cluster.connect import ClusterInfo
from sweeper.cluster.controller import ControllerView, Launch, Policy
from sweeper.errors import SweeperError
from sweeper.execution.ids import new_execution_id
from sweeper.execution.runner import ExecutionContext
from sweeper.execution.spec import build_spec
from sweeper.pipeline.graph import (
    DEPLOYMENT_UNSUPPORTED,
    NodeOutcome,
    PipelineError,
    merge_inputs,
    resolve_edges,
)
from sweeper.pipeline.state import Child, utc_now
from sweeper.pipeline.tasks import best_record, target_metric, task_variants
from sweeper.record import ExecutionRecord
from sweeper.status import Status

if TYPE_CHECKING:
    from sweeper.pipeline.runner import PipelineRunner

#: Why a resumed run starts an execution again that a killed driver left running.
RESUME_REASON = "the pipeline driver stopped while it ran; re-run on resume"


@dataclass
class _NodeContext:
    """What a started node's executions share: input URIs, environment, how many at once."""

    inputs: dict[str, list[str]]
    environment: dict[str, str]
    limit: int = 1


class PipelinePolicy(Policy):
    """Nodes start when their predecessors allow it; each child execution is one launch.

    A node's children are its executions (one per variant for a task node); the key of a
    launch is ``(node, child index)``. Every change of a node or child is saved to the run's
    state before it matters, so a killed driver leaves enough to ``resume``.
    """

    #: Pipelines prune nothing: no metric events are polled.
    poll_metrics = False

    def __init__(self, runner: PipelineRunner) -> None:
        self.runner = runner
        self.graph = runner.graph
        self.state = runner.state
        #: The error that ended the run at run time (an edge that cannot be resolved).
        self.failure: PipelineError | None = None
        self._contexts: dict[str, _NodeContext] = {}
        self._outcomes: dict[str, NodeOutcome] = {}
        self._records: dict[str, ExecutionRecord] = {}
        self._halted: Status | None = None
        self._cpus = 1.0
        self._controller: ControllerView | None = None

    # -- Policy --------------------------------------------------------------------------

    def shapes(self) -> Sequence[ResourceShape]:
        """Every step's shape: a node that could never fit fails the run before it starts."""
        return [
            ResourceShape.of_step(plan.step)
            for plan in self.graph.plans.values()
            if plan.step is not None
        ]

    def slots(self, cluster: ClusterInfo) -> int | None:
        """No limit of the controller's: each node limits its own executions."""
        return None

    def start(self, controller: ControllerView) -> None:
        """Save a new run, or settle what a killed driver left of a resumed one."""
        self._controller = controller
        self._cpus = controller.cluster.largest("CPU") or 1.0
        runner = self.runner
        if runner.resuming:
            self._recover(controller)
            runner.save(row=True, status=Status.RUNNING, error=None)
        else:
            runner.create()
        runner.event(f"pipeline run {runner.run_id} of {self.graph.name}")

    def ask(self, controller: ControllerView, free: int) -> list[Launch]:
        """Start the nodes that are ready, then the pending executions of running nodes."""
        while self._halted is None:
            self._start_ready()
            launches, settled = self._submit(controller, free)
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

    def on_result(self, controller: ControllerView, key: Hashable, record: ExecutionRecord) -> None:
        """A child execution ended: retry it, stop its task, or finish its node."""
        node_key: tuple[str, int] = key  # type: ignore[assignment]  # what ask() launched
        name, index = node_key
        self._records[record.id] = record
        node = self.state.nodes[name]
        child = node.children[index]
        child.status = record.status
        child.reused_from = record.reused_from
        child.error = record.error
        plan = self.graph.plans[name]
        reused = f", reused {child.reused_from}" if child.reused_from else ""
        self.runner.event(f"node {name}: execution {record.id} {child.status}{reused}")
        if (
            child.status != Status.COMPLETE
            and plan.node.on_error == "retry"
            and self._halted is None
            and child.retries < self.runner.options.max_retries
        ):
            child.retries += 1
            child.attempt += 1
            child.status = Status.PENDING
            self.runner.event(f"node {name}: retrying (attempt {child.attempt})")
            self.runner.save()
            return
        if plan.is_task and self._halted is None:
            self._task_child_done(name, child, record)
        self._child_done(name)

    def end(self, controller: ControllerView, status: Status) -> Status:
        """Save how the run ended: complete, error, stopped or interrupted."""
        if status is Status.INTERRUPTED:
            self._halt(Status.INTERRUPTED, str(Status.INTERRUPTED), stop=False)
        else:
            status = self._final_status()
        error = str(self.failure) if self.failure else self.state.data.get("error")
        self.runner.save(
            row=True, status=status, error=error if status != Status.COMPLETE else None
        )
        self.runner.event(f"pipeline run {self.runner.run_id}: {status}")
        return status

    def _final_status(self) -> Status:
        if self._halted is not None:
            return self._halted
        for name, node in self.state.nodes.items():
            on_error = self.graph.plans[name].node.on_error
            if node.status == Status.ERROR and on_error != "continue":
                return Status.ERROR
            if node.status in (Status.SKIPPED, Status.STOPPED, Status.PENDING, Status.RUNNING):
                return Status.ERROR
        return Status.COMPLETE

    # -- starting nodes ------------------------------------------------------------------

    def _start_ready(self) -> None:
        for name in self.graph.order:
            node = self.state.nodes[name]
            if node.status != Status.PENDING or self._halted is not None:
                continue
            blocked = None
            waiting = False
            for pred in self.graph.predecessors(name):
                pred_state = self.state.nodes[pred]
                if pred_state.status == Status.COMPLETE:
                    continue
                if (
                    pred_state.status == Status.ERROR
                    and self.graph.plans[pred].node.on_error == "continue"
                ):
                    continue
                if pred_state.status in (Status.ERROR, Status.STOPPED, Status.SKIPPED):
                    blocked = pred
                    break
                waiting = True
            if blocked is not None:
                self._finish_node(
                    name, Status.SKIPPED, f'upstream node "{blocked}" did not complete'
                )
            elif not waiting:
                self._start(name)

    def _start(self, name: str) -> None:
        plan = self.graph.plans[name]
        node = self.state.nodes[name]
        if plan.step is None:  # a deployment node: it fails alone, its on-error decides the rest
            node.started_at = utc_now()
            self._finish_node(name, Status.ERROR, DEPLOYMENT_UNSUPPORTED)
            self._after_error(name, DEPLOYMENT_UNSUPPORTED, {}, {})
            return
        node.status = Status.RUNNING
        node.started_at = node.started_at or utc_now()
        node.error = None
        try:
            edges = resolve_edges(
                self.graph, name, {p: self._outcome(p) for p in self.graph.predecessors(name)}
            )
            parameters = {**self.runner.values[name], **edges.parameters}
            inputs = merge_inputs(plan, self.runner.cli_inputs[name], edges.inputs)
            if not node.children:
                variants = task_variants(plan, parameters) if plan.is_task else [parameters]
                node.children = [Child(index=i, parameters=v) for i, v in enumerate(variants)]
        except PipelineError as exc:
            self.failure = self.failure or exc
            self._finish_node(name, Status.ERROR, str(exc))
            self._halt(Status.ERROR, str(exc))
            return
        limit = 1
        if plan.is_task:
            task = plan.task
            cap = (
                (task.maximum_queued_executions or task.execution_batch_size)
                if task is not None
                else None
            )
            limit = int(
                cap or max(1, self._cpus // max(ResourceShape.of_step(plan.step).cpus, 1e-9))
            )
        self._contexts[name] = _NodeContext(
            inputs, {**self.runner.options.environment, **edges.environment}, limit
        )
        kind = f"task of {len(node.children)} executions" if plan.is_task else "execution"
        self.runner.event(f"node {name}: starting ({kind} of step {plan.step.name})")
        self.runner.save()
        if self._act(
            name,
            "node-starting",
            {},
            {k: v for k, v in parameters.items() if not isinstance(v, list)},
        ):
            return  # _halt marked this node stopped
        if all(c.status == Status.COMPLETE for c in node.children):
            self._node_done(name)  # finished while a killed driver was away

    def _outcome(self, name: str) -> NodeOutcome:
        if name not in self._outcomes:
            node = self.state.nodes[name]
            records = [r for r in (self._record(i) for i in node.execution_ids) if r is not None]
            best = self._record(node.best_execution_id) if node.best_execution_id else None
            self._outcomes[name] = NodeOutcome(
                records, best or (records[-1] if records and node.type == "execution" else None)
            )
        return self._outcomes[name]

    def _record(self, execution_id: str) -> ExecutionRecord | None:
        if execution_id not in self._records:
            record = recovery.read_record(self.runner.store, execution_id)
            if record is None:
                return None
            self._records[execution_id] = record
        return self._records[execution_id]

    # -- executions ----------------------------------------------------------------------

    def _submit(self, controller: ControllerView, free: int) -> tuple[list[Launch], bool]:
        """Launches of pending children within each node's limit; and whether a child ended."""
        launches: list[Launch] = []
        settled = False
        busy: dict[str, int] = {}
        for key in controller.in_flight:
            busy[key[0]] = busy.get(key[0], 0) + 1  # type: ignore[index]
        for name in self.graph.order:
            node = self.state.nodes[name]
            if node.status != Status.RUNNING:
                continue
            context = self._contexts[name]
            for child in node.children:
                if self._halted is not None or len(launches) >= free:
                    return launches, settled
                if busy.get(name, 0) >= context.limit:
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
        context = self._contexts[name]
        runner = self.runner
        spec = build_spec(
            plan.run_step,
            parameters=child.parameters,
            inputs=context.inputs,
            code_version=runner.code_version,
            code_archive=runner.code_archive,
            project_dir=str(runner.project_dir),
            runtime=runner.options.runtime,
            environment=context.environment,
            pull_policy=runner.options.pull_policy,
        )
        child.execution_id = new_execution_id()
        child.status = Status.RUNNING
        child.reused_from = child.error = None
        runner.save()  # the id is durable before the execution can start
        return Launch(
            key=(name, child.index),
            spec=spec,
            context=ExecutionContext(
                pipeline_run_id=runner.run_id,
                node=name,
                attempt=child.attempt,
                trial_number=child.index if plan.is_task else None,
            ),
            execution_id=child.execution_id,
            reuse=runner.reuse,
        )

    def _task_child_done(self, name: str, child: Child, record: ExecutionRecord) -> None:
        task = self.graph.plans[name].task
        if task is None:
            return
        stop = False
        if child.status == Status.COMPLETE and task.stop_condition is not None:
            try:
                stop = bool(
                    task.stop_condition.evaluate(dict(record.metrics), dict(record.parameters))
                )
            except Exception:
                stop = False
        if child.status != Status.COMPLETE and task.on_child_error == "stop-all-and-error":
            stop = True
        if stop:
            self._stop_node(name)

    def _child_done(self, name: str) -> None:
        node = self.state.nodes[name]
        if any(c.status in (Status.PENDING, Status.RUNNING) for c in node.children):
            self.runner.save()
            return
        self._node_done(name)

    def _stop_node(self, name: str) -> None:
        """Stop a node's running executions and skip its pending ones."""
        for child in self.state.nodes[name].children:
            if child.status == Status.PENDING:
                child.status = Status.SKIPPED
        if self._controller is not None:
            for key in list(self._controller.in_flight):
                if key[0] == name:  # type: ignore[index]
                    self._controller.stop(key)

    # -- finishing nodes -----------------------------------------------------------------

    def _node_done(self, name: str) -> None:
        plan = self.graph.plans[name]
        node = self.state.nodes[name]
        records = [r for r in (self._record(i) for i in node.execution_ids) if r is not None]
        if plan.is_task:
            status, error, best = self._task_result(name, records)
        else:
            best = records[-1] if records else None
            last = node.children[-1] if node.children else None
            complete = last is not None and last.status == Status.COMPLETE
            status = Status.COMPLETE if complete else Status.ERROR
            error = None if complete else (last.error if last else None) or "the execution failed"
            if last is not None and last.status == Status.STOPPED and self._halted is not None:
                status = Status.STOPPED
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
        if on_error != "continue" and not self.state.data.get("error"):
            self.state.data["error"] = f'node "{name}" failed: {error}'
        if on_error == "stop-next":
            for descendant in self.graph.descendants(name):
                if self.state.nodes[descendant].status == Status.PENDING:
                    self._finish_node(
                        descendant, Status.SKIPPED, f'node "{name}" failed (on-error: stop-next)'
                    )
        elif on_error != "continue":
            self._halt(Status.ERROR, f'node "{name}" failed: {error}')

    def _task_result(
        self, name: str, records: list[ExecutionRecord]
    ) -> tuple[Status, str | None, ExecutionRecord | None]:
        plan = self.graph.plans[name]
        task = plan.task
        complete = [r for r in records if r.status is Status.COMPLETE]
        failed = [r for r in records if r.status not in (Status.COMPLETE, Status.STOPPED)]
        best = best_record(plan, records)
        if self._halted is not None and not complete:
            return Status.STOPPED, "the pipeline stopped", None
        if not complete:
            return Status.ERROR, f"none of its {len(records)} executions completed", None
        if best is None:
            metric, _ = target_metric(plan)
            return Status.ERROR, f'none of its executions printed the metric "{metric}"', None
        if (
            failed
            and task is not None
            and task.on_child_error in ("continue-and-error", "stop-all-and-error")
        ):
            return (
                Status.ERROR,
                f"{len(failed)} of its executions failed (on-child-error: {task.on_child_error})",
                best,
            )
        return Status.COMPLETE, None, best

    def _finish_node(self, name: str, status: Status, error: str | None) -> None:
        node = self.state.nodes[name]
        node.status = status
        node.error = error
        node.ended_at = utc_now()
        self.runner.event(f"node {name}: {status}" + (f" ({error})" if error else ""))
        self.runner.save(row=True)

    def _act(
        self, name: str, when: str, metadata: Mapping[str, Any], parameters: Mapping[str, Any]
    ) -> bool:
        """Run the node's actions for ``when``; True when one stopped the pipeline."""
        for action in self.graph.plans[name].node.actions:
            if when not in action.when:
                continue
            if not all(condition.evaluate(metadata, parameters) for condition in action.if_):
                continue
            for then in action.then:
                if then in ("stop-pipeline", "error-pipeline"):
                    status = Status.STOPPED if then == "stop-pipeline" else Status.ERROR
                    conditions = " and ".join(c.text for c in action.if_) or "always"
                    self._halt(status, f'node "{name}": {when} action ({conditions}): {then}')
                    return True
        return False

    def _halt(self, status: Status, reason: str, *, stop: bool = True) -> None:
        """Stop the pipeline: stop running executions, skip what has not started.

        ``stop=False`` when the controller has already stopped them (Ctrl-C).
        """
        if self._halted is not None:
            return
        self._halted = status
        self.state.data["error"] = reason
        self.runner.event(f"pipeline run {self.runner.run_id}: {status}: {reason}")
        if stop and self._controller is not None:
            self._controller.stop_all()
        for name, node in self.state.nodes.items():
            if node.status == Status.RUNNING:
                for child in node.children:
                    if child.status == Status.PENDING:
                        child.status = Status.SKIPPED
                if not any(c.status == Status.RUNNING for c in node.children):
                    self._finish_node(name, Status.STOPPED, reason)
            elif node.status == Status.PENDING:
                self._finish_node(name, Status.SKIPPED, reason)

    # -- resume --------------------------------------------------------------------------

    def _recover(self, controller: ControllerView) -> None:
        """Keep complete nodes and executions; make everything else run again."""
        for node in self.state.nodes.values():
            if node.status == Status.COMPLETE:
                continue
            for child in node.children:
                if child.execution_id is None:
                    child.status = Status.PENDING
                    continue
                record = recovery.settle(self.runner.store, child.execution_id)
                if record is not None and record.status is Status.COMPLETE:
                    child.status = Status.COMPLETE
                    child.reused_from = record.reused_from
                    continue
                if record is not None:
                    recovery.crash(self.runner.store, record, RESUME_REASON)
                child.status = Status.PENDING
                child.attempt += 1
                child.retries = 0
            node.status = Status.PENDING
            node.error = None
            node.best_execution_id = None
            node.ended_at = None
