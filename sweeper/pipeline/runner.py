"""The pipeline loop: start nodes whose inputs are ready, run their executions on Ray actors.

Each execution runs on an actor of :class:`sweeper.cluster.ActorPool` that holds its step's
CPUs and GPUs, so independent nodes (and the variants of a task node) run concurrently as
far as the cluster allows. The driver only decides: which node is ready, what its edges
give it, what to do when it fails (``on-error``) and what its ``actions`` say.

``on-error``: ``stop-all`` (default) stops every running node and starts nothing more;
``stop-next`` skips the failed node's descendants and lets other branches finish;
``continue`` treats the failed node as done (downstream nodes run, the pipeline can still
complete); ``retry`` runs the node again, up to ``max_retries`` times, then stops all.

Actions: ``when`` node-starting / node-complete / node-error, ``if`` expressions over the
node's metadata and parameters (all must hold), ``then`` stop-pipeline (status
``stopped``), error-pipeline (status ``error``) or noop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ray

from sweeper.cluster import recovery
from sweeper.cluster.actors import ActorPool, ResourceShape, TrialHandle
from sweeper.cluster.connect import connect
from sweeper.cluster.store_service import StoreLink, link_store
from sweeper.errors import SweeperError
from sweeper.execution.ids import new_execution_id
from sweeper.execution.runner import ExecutionContext
from sweeper.execution.spec import build_spec
from sweeper.pipeline.graph import (
    DEPLOYMENT_UNSUPPORTED,
    NodeOutcome,
    PipelineError,
    PipelineGraph,
    merge_inputs,
    resolve_edges,
)
from sweeper.pipeline.state import Child, NodeState, PipelineState, utc_now
from sweeper.pipeline.tasks import best_record, target_metric, task_variants
from sweeper.status import Status


@dataclass
class PipelineOptions:
    """What a pipeline run was started with (saved with it, so ``resume`` needs only the id)."""

    pipeline: str
    parameters: dict[str, list[str]] = field(default_factory=dict)
    inputs: dict[str, list[str]] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    reuse: bool = False
    runtime: str = "local"
    address: str | None = None
    pull_policy: str = "missing"
    max_retries: int = 1
    fresh_actors: bool = False


@dataclass
class _NodeContext:
    """What a started node's executions share: input URIs and environment."""

    inputs: dict[str, list[str]]
    environment: dict[str, str]
    limit: int = 1


class PipelineRunner:
    """Runs (or resumes) one pipeline run against a store and a Ray cluster."""

    def __init__(
        self,
        *,
        config: Any,
        config_text: str,
        store: Any,
        project_dir: Path,
        options: PipelineOptions,
        code_version: str,
        code_archive: str | None,
        run_id: str | None = None,
        state: PipelineState | None = None,
    ) -> None:
        self.config = config
        self.config_text = config_text
        self.store = store
        self.project_dir = Path(project_dir)
        self.options = options
        self.code_version = code_version
        self.code_archive = code_archive
        self.graph = PipelineGraph.build(config, options.pipeline)
        self.values = self.graph.parameter_values(options.parameters)
        self.cli_inputs = self.graph.node_inputs(options.inputs)
        self.graph.check_required_inputs(self.cli_inputs)
        self.reuse = options.reuse or bool(self.graph.pipeline.reuse_executions)
        self.resuming = state is not None
        self.run_id = state.run_id if state is not None else (run_id or new_execution_id())
        self.state = state or PipelineState(store, self.run_id)
        self.on_event: Callable[[str], None] | None = None
        self._contexts: dict[str, _NodeContext] = {}
        self._outcomes: dict[str, NodeOutcome] = {}
        self._records: dict[str, dict[str, Any]] = {}
        self._in_flight: dict[Any, TrialHandle] = {}
        self._halted: str | None = None
        self._failure: PipelineError | None = None
        self._cpus = 1.0
        self._link: StoreLink | None = None

    @classmethod
    def for_resume(cls, store: Any, run_id: str, *, address: str | None = None) -> PipelineRunner:
        """A runner that continues run ``run_id`` with the configuration it was started with."""
        from sweeper.config import parse_config

        state = PipelineState.load(store, run_id)
        data = state.data
        options = PipelineOptions(**data["options"])
        if address:
            options.address = address
        config = parse_config(
            data["config_text"],
            filename=data.get("config_filename", "valohai.yaml"),
            strict=False,  # the pipeline alone must still be valid (PipelineGraph.build)
        )
        return cls(
            config=config,
            config_text=data["config_text"],
            store=store,
            project_dir=Path(data["project_dir"]),
            options=options,
            code_version=data["code_version"],
            code_archive=data.get("code_archive"),
            state=state,
        )

    # -- events ----------------------------------------------------------------------------

    def _event(self, text: str) -> None:
        if self.on_event is not None:
            self.on_event(text)

    def _save(self, *, row: bool = False, **changes: Any) -> None:
        self.state.save(row=row, **changes)

    # -- the loop --------------------------------------------------------------------------

    def run(self, *, on_event: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Run every node to its end; return the ``--json`` summary.

        Raises :class:`PipelineError` (after recording the run as ``error``) when an edge
        cannot be resolved at run time, e.g. a metadata key the source never printed.
        """
        self.on_event = on_event
        if self.resuming and self.state.status == Status.COMPLETE:
            return self.state.summary()
        cluster = connect(self.options.address)
        for plan in self.graph.plans.values():
            if plan.step is None:
                continue
            shape = ResourceShape.of_step(plan.step)
            cluster.check_fits(shape.cpus, shape.gpus)
        self._cpus = cluster.largest("CPU") or 1.0
        self._link = link = link_store(self.store, cluster)
        if self.resuming:
            self._recover()
            self._save(row=True, status=Status.RUNNING, error=None)
        else:
            self.state.create(
                {
                    "pipeline": self.graph.name,
                    "options": asdict(self.options),
                    "config_text": self.config_text,
                    "config_filename": getattr(self.config, "filename", "valohai.yaml"),
                    "project_dir": str(self.project_dir),
                    "code_version": self.code_version,
                    "code_archive": self.code_archive,
                },
                {
                    name: NodeState(name=name, type=plan.node.type)
                    for name, plan in self.graph.plans.items()
                },
            )
        self._event(f"pipeline run {self.run_id} of {self.graph.name}")
        pool = ActorPool(link.access, self.options.runtime, fresh_actors=self.options.fresh_actors)
        status: str | None = None
        try:
            while True:
                if self._halted is None:
                    self._start_ready()
                self._submit(pool)
                pool.trim(0)  # idle actors would hold CPUs another shape may need
                if not self._in_flight:
                    break
                ready, _ = ray.wait(list(self._in_flight), num_returns=1, timeout=1.0)
                for ref in ready:
                    self._collect(pool, self._in_flight.pop(ref))
        except KeyboardInterrupt:
            status = Status.INTERRUPTED
            self._halt(Status.INTERRUPTED, "interrupted")
            try:
                ray.wait(list(self._in_flight), num_returns=len(self._in_flight), timeout=30)
            except Exception:
                pass
            raise
        finally:
            pool.shutdown()
            link.close()
            status = status or self._final_status()
            error = str(self._failure) if self._failure else self.state.data.get("error")
            self._save(row=True, status=status, error=error if status != Status.COMPLETE else None)
            self._event(f"pipeline run {self.run_id}: {status}")
        if self._failure is not None:
            raise self._failure
        return self.state.summary()

    def _final_status(self) -> str:
        if self._halted is not None:
            return self._halted
        for name, node in self.state.nodes.items():
            on_error = self.graph.plans[name].node.on_error
            if node.status == Status.ERROR and on_error != "continue":
                return Status.ERROR
            if node.status in (Status.SKIPPED, Status.STOPPED, Status.PENDING, Status.RUNNING):
                return Status.ERROR
        return Status.COMPLETE

    # -- starting nodes --------------------------------------------------------------------

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
            parameters = {**self.values[name], **edges.parameters}
            inputs = merge_inputs(plan, self.cli_inputs[name], edges.inputs)
            if not node.children:
                variants = task_variants(plan, parameters) if plan.is_task else [parameters]
                node.children = [Child(index=i, parameters=v) for i, v in enumerate(variants)]
        except PipelineError as exc:
            self._failure = self._failure or exc
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
            inputs, {**self.options.environment, **edges.environment}, limit
        )
        kind = f"task of {len(node.children)} executions" if plan.is_task else "execution"
        self._event(f"node {name}: starting ({kind} of step {plan.step.name})")
        self._save()
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

    def _record(self, execution_id: str) -> dict[str, Any] | None:
        if execution_id not in self._records:
            record = recovery.read_record(self.store, execution_id)
            if record is None:
                return None
            self._records[execution_id] = record.to_dict()
        return self._records[execution_id]

    # -- executions ------------------------------------------------------------------------

    def _submit(self, pool: ActorPool) -> None:
        if self._halted is not None:
            return
        busy: dict[str, int] = {}
        for handle in self._in_flight.values():
            busy[handle.key[0]] = busy.get(handle.key[0], 0) + 1
        for name in self.graph.order:
            node = self.state.nodes[name]
            if node.status != Status.RUNNING:
                continue
            context = self._contexts[name]
            for child in node.children:
                if self._halted is not None:
                    return
                if busy.get(name, 0) >= context.limit:
                    break
                if child.status != Status.PENDING:
                    continue
                try:
                    handle = self._launch(pool, name, child)
                except SweeperError as exc:
                    child.status, child.error = Status.ERROR, str(exc)
                    self._child_done(name)
                    continue
                self._in_flight[handle.ref] = handle
                busy[name] = busy.get(name, 0) + 1

    def _launch(self, pool: ActorPool, name: str, child: Child) -> TrialHandle:
        plan = self.graph.plans[name]
        context = self._contexts[name]
        spec = build_spec(
            plan.step,
            parameters=child.parameters,
            inputs=context.inputs,
            code_version=self.code_version,
            code_archive=self.code_archive,
            project_dir=str(self.project_dir),
            runtime=self.options.runtime,
            environment=context.environment,
            pull_policy=self.options.pull_policy,
        )
        if self._link is not None:  # local inputs travel to nodes without the driver's disk
            spec = self._link.stage(spec)
        child.execution_id = new_execution_id()
        child.status = Status.RUNNING
        child.reused_from = child.error = None
        self._save()  # the id is durable before the execution can start
        execution_context = ExecutionContext(
            pipeline_run_id=self.run_id,
            node=name,
            attempt=child.attempt,
            trial_number=child.index if plan.is_task else None,
        )
        return pool.submit(
            (name, child.index),
            spec,
            child.execution_id,
            execution_context,
            reuse=self.reuse,
            shape=ResourceShape.of_step(plan.step),
        )

    def _collect(self, pool: ActorPool, handle: TrialHandle) -> None:
        name, index = handle.key
        try:
            record = ray.get(handle.ref)
            pool.release(handle)
        except Exception as exc:  # the actor or its node died
            pool.release(handle, healthy=False)
            reason = f"the Ray actor running it died: {type(exc).__name__}: {str(exc)[:300]}"
            settled = recovery.settle(self.store, handle.execution_id)
            record = (
                recovery.crash(self.store, settled, reason).to_dict()
                if settled is not None
                else {"id": handle.execution_id, "status": Status.CRASHED, "error": reason}
            )
        self._records[handle.execution_id] = record
        node = self.state.nodes[name]
        child = node.children[index]
        child.status = str(record.get("status") or Status.CRASHED)
        child.reused_from = record.get("reused_from")
        child.error = record.get("error")
        plan = self.graph.plans[name]
        reused = f", reused {child.reused_from}" if child.reused_from else ""
        self._event(f"node {name}: execution {handle.execution_id} {child.status}{reused}")
        if (
            child.status != Status.COMPLETE
            and plan.node.on_error == "retry"
            and self._halted is None
        ):
            if child.retries < self.options.max_retries:
                child.retries += 1
                child.attempt += 1
                child.status = Status.PENDING
                self._event(f"node {name}: retrying (attempt {child.attempt})")
                self._save()
                return
        if plan.is_task and self._halted is None:
            self._task_child_done(name, child, record)
        self._child_done(name)

    def _task_child_done(self, name: str, child: Child, record: dict[str, Any]) -> None:
        task = self.graph.plans[name].task
        if task is None:
            return
        stop = False
        if child.status == Status.COMPLETE and task.stop_condition is not None:
            try:
                stop = bool(
                    task.stop_condition.evaluate(
                        record.get("metrics") or {}, record.get("parameters") or {}
                    )
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
            self._save()
            return
        self._node_done(name)

    def _stop_node(self, name: str) -> None:
        """Stop a node's running executions and skip its pending ones."""
        for child in self.state.nodes[name].children:
            if child.status == Status.PENDING:
                child.status = Status.SKIPPED
        for handle in self._in_flight.values():
            if handle.key[0] == name:
                try:
                    handle.actor.stop.remote(Status.STOPPED)
                except Exception:
                    pass

    # -- finishing nodes -------------------------------------------------------------------

    def _node_done(self, name: str) -> None:
        plan = self.graph.plans[name]
        node = self.state.nodes[name]
        records = [r for r in (self._record(i) for i in node.execution_ids) if r is not None]
        if plan.is_task:
            status, error, best = self._task_result(name, records)
        else:
            best = records[-1] if records else None
            last = node.children[-1] if node.children else None
            status = (
                Status.COMPLETE
                if last is not None and last.status == Status.COMPLETE
                else Status.ERROR
            )
            error = (
                None
                if status == Status.COMPLETE
                else (last.error if last else None) or "the execution failed"
            )
            if last is not None and last.status == Status.STOPPED and self._halted is not None:
                status = Status.STOPPED
        node.best_execution_id = best.get("id") if best else None
        self._outcomes[name] = NodeOutcome(records, best)
        self._finish_node(name, status, error)
        if self._halted is not None:
            return
        metadata = (best or {}).get("metrics") or {}
        parameters = (best or {}).get("parameters") or {}
        if status == Status.COMPLETE:
            self._act(name, "node-complete", metadata, parameters)
        elif status == Status.ERROR:
            self._after_error(name, error, metadata, parameters)

    def _after_error(
        self, name: str, error: str | None, metadata: dict[str, Any], parameters: dict[str, Any]
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
        self, name: str, records: list[dict[str, Any]]
    ) -> tuple[str, str | None, dict[str, Any] | None]:
        plan = self.graph.plans[name]
        task = plan.task
        complete = [r for r in records if r.get("status") == Status.COMPLETE]
        failed = [r for r in records if r.get("status") not in (Status.COMPLETE, Status.STOPPED)]
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

    def _finish_node(self, name: str, status: str, error: str | None) -> None:
        node = self.state.nodes[name]
        node.status = status
        node.error = error
        node.ended_at = utc_now()
        self._event(f"node {name}: {status}" + (f" ({error})" if error else ""))
        self._save(row=True)

    def _act(
        self, name: str, when: str, metadata: dict[str, Any], parameters: dict[str, Any]
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

    def _halt(self, status: str, reason: str) -> None:
        """Stop the pipeline: stop running executions, skip what has not started."""
        if self._halted is not None:
            return
        self._halted = status
        self.state.data["error"] = reason
        self._event(f"pipeline run {self.run_id}: {status}: {reason}")
        for name, node in self.state.nodes.items():
            if node.status == Status.RUNNING:
                self._stop_node(name)
                if not any(c.status == Status.RUNNING for c in node.children):
                    self._finish_node(name, Status.STOPPED, reason)
            elif node.status == Status.PENDING:
                self._finish_node(name, Status.SKIPPED, reason)

    # -- resume ----------------------------------------------------------------------------

    def _recover(self) -> None:
        """Keep complete nodes and executions; make everything else run again."""
        reason = "the pipeline driver stopped while it ran; re-run on resume"
        for node in self.state.nodes.values():
            if node.status == Status.COMPLETE:
                continue
            for child in node.children:
                if child.execution_id is None:
                    child.status = Status.PENDING
                    continue
                record = recovery.settle(self.store, child.execution_id)
                if record is not None and record.status is Status.COMPLETE:
                    child.status = Status.COMPLETE
                    child.reused_from = record.reused_from
                    continue
                if record is not None:
                    recovery.crash(self.store, record, reason)
                child.status = Status.PENDING
                child.attempt += 1
                child.retries = 0
            node.status = Status.PENDING
            node.error = None
            node.best_execution_id = None
            node.ended_at = None
