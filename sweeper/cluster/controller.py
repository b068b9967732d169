"""One controller for every run of many executions: the Ray side, written once.

A :class:`Controller` connects to the cluster, checks that the work fits, owns the
:class:`~sweeper.cluster.actors.ActorPool` and the ``ray.wait`` loop, polls metric events,
stops executions and finishes those whose actor died. What runs next and what a result
means is a :class:`Policy`'s business (a sweep's Optuna study, say), as in Ray Tune, whose
``TuneController`` calls its scheduler and searcher with itself as the argument.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import ray

from sweeper.cluster import recovery
from sweeper.cluster.actors import ActorPool, ResourceShape, TrialHandle
from sweeper.cluster.connect import ClusterInfo, connect
from sweeper.cluster.store_service import StoreLink, link_store
from sweeper.execution.ids import new_execution_id
from sweeper.execution.record import ExecutionRecord, MetricEvent
from sweeper.execution.runner import ExecutionContext, planned_record
from sweeper.execution.spec import ExecutionSpec
from sweeper.runtime import get_runtime
from sweeper.status import Status
from sweeper.store import RecordStore

#: How long one ``take_events`` call may take before that actor's events wait for the next poll.
EVENTS_TIMEOUT_S = 5.0
#: How long an interrupted run waits for its executions to stop and record their end.
INTERRUPT_WAIT_S = 30.0


@dataclass(frozen=True)
class Launch:
    """One execution a policy wants started: its key (a trial, a node's child) and its spec."""

    key: Hashable
    spec: ExecutionSpec
    context: ExecutionContext
    execution_id: str = field(default_factory=new_execution_id)
    reuse: bool = False


class Policy(Protocol):
    """Decides what runs and what a result means; the :class:`Controller` does the running."""

    #: Whether metric events are polled while executions run (a pruner needs them).
    poll_metrics: bool

    def shapes(self) -> Sequence[ResourceShape]:
        """The resource shapes executions will ask for, checked before anything runs."""
        ...

    def slots(self, cluster: ClusterInfo) -> int | None:
        """How many executions may be in flight at once; None for no limit of the controller's."""
        ...

    def start(self, controller: Controller) -> None:
        """Create or load the run's state; on resume settle what a killed driver left."""
        ...

    def ask(self, controller: Controller, free: int) -> list[Launch]:
        """Up to ``free`` executions to start now ([] when none is due now)."""
        ...

    def exhausted(self) -> bool:
        """Whether no execution will ever be asked for again (idle actors can go)."""
        ...

    def tick(self, controller: Controller) -> None:
        """Called once per turn of the loop, before it waits (progress reports)."""
        ...

    # Optional: ``asked_ahead(controller, free) -> list[Launch]``, executions already decided
    # that may start in freed slots before the results that freed them reach on_result.

    def on_events(
        self, controller: Controller, handle: TrialHandle, events: list[MetricEvent]
    ) -> None:
        """Metric events an execution printed since the last poll (only with ``poll_metrics``)."""
        ...

    def on_result(
        self, controller: Controller, handle: TrialHandle, record: ExecutionRecord
    ) -> None:
        """An execution ended (its actor's death included, as ``crashed``)."""
        ...

    def end(self, controller: Controller, status: Status) -> Status:
        """Persist the run's end, always called once; returns the status the run ends with."""
        ...


class Controller:
    """Connects, checks capacity, owns the actors and the ``ray.wait`` loop, stops, recovers."""

    def __init__(
        self,
        store: RecordStore,
        *,
        address: str | None,
        runtime: str,
        fresh_actors: bool = False,
    ) -> None:
        self.store = store
        self.address = address
        self.runtime = runtime
        self.fresh_actors = fresh_actors
        self._cluster: ClusterInfo | None = None
        self._in_flight: dict[Any, TrialHandle] = {}  # by result ref, what ray.wait returns
        self._stopping = False
        self._status = Status.COMPLETE
        self._link: StoreLink | None = None

    @property
    def cluster(self) -> ClusterInfo:
        """The cluster :meth:`run` connected to."""
        if self._cluster is None:
            raise RuntimeError("the controller is not running")
        return self._cluster

    @property
    def in_flight(self) -> Mapping[Hashable, TrialHandle]:
        """The executions running now, by their key."""
        return {handle.key: handle for handle in self._in_flight.values()}

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop_all` or :meth:`fail` ended the asking."""
        return self._stopping

    def run(self, policy: Policy) -> Status:
        """Run the policy's executions to the end: COMPLETE, FAILED or INTERRUPTED (Ctrl-C re-raised)."""
        self._cluster = connect(self.address)
        for shape in policy.shapes():
            self._cluster.check_fits(shape.cpus, shape.gpus)
        slots = policy.slots(self._cluster)
        # Before anything starts: how each node reaches the store (directly or through the
        # driver), and whether local inputs must travel through it.
        self._link = link = link_store(self.store, self._cluster)
        pool = ActorPool(
            link.access,
            self.runtime,
            fresh_actors=self.fresh_actors,
            # a policy may have its actors batch their dataset rows (a sweep does)
            batch_rows_s=getattr(policy, "batch_rows_s", None),
        )
        shapes = policy.shapes()
        if slots is not None and len(shapes) == 1:
            # the actors' processes boot while the policy starts (a sweep opens its study
            # and asks its first trials): the first executions do not wait for both in turn
            pool.prestart(shapes[0], slots)
        try:
            policy.start(self)
        except BaseException:  # nothing ran: the actors, the probe file and the service go now
            pool.shutdown()
            link.close()
            raise
        status = Status.COMPLETE
        try:
            self._loop(policy, pool, slots)
            status = self._status
        except KeyboardInterrupt:
            status = Status.INTERRUPTED
            self._interrupt()
            raise
        finally:
            pool.shutdown()
            try:
                status = policy.end(self, status)
            finally:
                link.close()
        return status

    def _loop(self, policy: Policy, pool: ActorPool, slots: int | None) -> None:
        while True:
            if not self._stopping:
                free = slots - len(self._in_flight) if slots is not None else 1 << 30
                if free > 0:
                    for launch in policy.ask(self, free):
                        self._submit(pool, launch)
            if self._stopping or policy.exhausted():
                pool.trim(keep=0)  # no more work for idle actors: give their resources back
            policy.tick(self)
            if not self._in_flight:
                return
            ready, _ = ray.wait(
                list(self._in_flight),
                num_returns=1,
                timeout=0.25 if policy.poll_metrics else 1.0,
            )
            if policy.poll_metrics:
                for handle, events in self._poll_events():
                    policy.on_events(self, handle, events)
            finished = []
            for ref in ready:  # each actor back in the pool first, for what starts next
                handle = self._in_flight.pop(ref)
                finished.append((handle, self._result(pool, handle)))
            ahead = getattr(policy, "asked_ahead", None)
            if finished and ahead is not None and slots is not None and not self._stopping:
                # what the policy already asked starts before the results are told: a freed
                # slot does not wait for the policy's bookkeeping (a sweep's Optuna tell)
                for launch in ahead(self, slots - len(self._in_flight)):
                    self._submit(pool, launch)
            for handle, record in finished:
                policy.on_result(self, handle, record)
            if self._stopping:
                # again after each result: a stop sent before an actor's run began is lost
                for handle in self._in_flight.values():
                    handle.actor.stop.remote(Status.STOPPED)

    def _submit(self, pool: ActorPool, launch: Launch) -> None:
        spec = self._link.stage(launch.spec) if self._link is not None else launch.spec
        handle = pool.submit(
            launch.key,
            spec,
            launch.execution_id,
            launch.context,
            reuse=launch.reuse,
            shape=ResourceShape.of(launch.spec),
        )
        self._in_flight[handle.ref] = handle

    def _poll_events(self) -> Iterator[tuple[TrialHandle, list[MetricEvent]]]:
        pending = [
            (h, h.actor.take_events.remote()) for h in self._in_flight.values() if not h.stopping
        ]
        for handle, ref in pending:
            try:
                events = ray.get(ref, timeout=EVENTS_TIMEOUT_S)
            except Exception:  # a busy or dying actor: its events come with the next poll
                continue
            yield handle, events

    def _result(self, pool: ActorPool, handle: TrialHandle) -> ExecutionRecord:
        try:
            record: ExecutionRecord = ray.get(handle.ref)
        except Exception as exc:  # the actor or its node died: an infrastructure failure
            pool.release(handle, healthy=False)
            reason = f"the Ray actor running it died: {type(exc).__name__}: {str(exc)[:300]}"
            context = handle.context
            # what the driver knows, for an actor that died before it wrote a record
            planned = planned_record(
                handle.spec,
                handle.execution_id,
                context,
                with_image=get_runtime(self.runtime).uses_images,
            )
            return self.mark_crashed(
                handle.execution_id,
                reason,
                sweep_id=context.sweep_id,
                pipeline_run_id=context.pipeline_run_id,
                planned=planned,
            )
        pool.release(handle)
        return record

    def _interrupt(self) -> None:
        refs = list(self._in_flight)
        for handle in self._in_flight.values():
            try:
                handle.actor.stop.remote(Status.STOPPED)
            except Exception:
                pass
        try:
            ray.wait(refs, num_returns=len(refs), timeout=INTERRUPT_WAIT_S)
        except Exception:
            pass

    def stop(self, key: Hashable, reason: Status = Status.STOPPED) -> None:
        """Stop the execution of ``key``; ``reason`` (stopped, pruned) becomes its status."""
        for handle in self._in_flight.values():
            if handle.key == key:
                handle.stopping = True
                handle.actor.stop.remote(reason)

    def stop_all(self) -> None:
        """Stop every execution in flight and ask the policy for no more."""
        self._stopping = True
        for handle in self._in_flight.values():
            handle.actor.stop.remote(Status.STOPPED)

    def fail(self, status: Status = Status.FAILED) -> None:
        """End the run with ``status`` once what is in flight has stopped."""
        self._status = status
        self.stop_all()

    def settle(self, execution_id: str) -> ExecutionRecord | None:
        """:func:`sweeper.cluster.recovery.settle` on this controller's store."""
        return recovery.settle(self.store, execution_id)

    def mark_crashed(
        self,
        execution_id: str,
        reason: str,
        *,
        sweep_id: str | None = None,
        pipeline_run_id: str | None = None,
        planned: ExecutionRecord | None = None,
    ) -> ExecutionRecord:
        """:func:`sweeper.cluster.recovery.mark_crashed` on this controller's store."""
        return recovery.mark_crashed(
            self.store,
            execution_id,
            reason,
            sweep_id=sweep_id,
            pipeline_run_id=pipeline_run_id,
            planned=planned,
        )
