"""One controller for every run of many executions: the Ray side, written once.

A :class:`Controller` connects to the cluster, checks that the work fits, owns the
:class:`~sweeper.cluster.actors.ActorPool` and the ``ray.wait`` loop, polls metric events,
stops executions and finishes those whose actor died. What runs next and what a result
means is a :class:`Policy`'s business (a sweep's Optuna study, say), as in Ray Tune, whose
``TuneController`` calls its scheduler and searcher with itself as the argument.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import ray

from sweeper.cluster import recovery
from sweeper.cluster.actors import ActorPool, ResourceShape, TrialHandle
from sweeper.cluster.connect import ClusterInfo, connect, say_notes
from sweeper.cluster.distributed import Groups, GroupSlot
from sweeper.cluster.store_service import StoreLink, link_store
from sweeper.execution.ids import new_execution_id
from sweeper.execution.runner import ExecutionContext, planned_record
from sweeper.execution.spec import ExecutionSpec
from sweeper.record import ExecutionRecord, FailureKind, MetricEvent
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
    #: A member of a distributed group: it starts with the group's other members, all at once.
    group: GroupSlot | None = None


#: A failure an execution is stopped as: its class and why (a straggler is a ``time_limit``).
Failed = tuple[FailureKind, str] | None


class ControllerView(Protocol):
    """What a :class:`Policy` sees of the controller and may ask of it; nothing else.

    A policy never holds the :class:`Controller` (its pool, its store link, its Ray refs):
    it gets this view in each hook, as Ray Tune hands its schedulers a narrow wrapper.
    """

    @property
    def cluster(self) -> ClusterInfo:
        """The cluster the run is on (its nodes and resources)."""
        ...

    @property
    def in_flight(self) -> Collection[Hashable]:
        """The keys of the executions running now."""
        ...

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop_all` or :meth:`fail` ended the asking."""
        ...

    def stop(self, key: Hashable, reason: Status = Status.STOPPED, failed: Failed = None) -> None:
        """Stop the execution of ``key``; ``reason`` (stopped, pruned) becomes its status;
        ``failed`` (a failure class and why): it ends as an ``error`` of that class instead."""
        ...

    def stop_all(self) -> None:
        """Stop every execution in flight and ask the policy for no more."""
        ...

    def fail(self, status: Status = Status.FAILED) -> None:
        """End the run with ``status`` once what is in flight has stopped."""
        ...


class Policy:
    """Decides what runs and what a result means; the :class:`Controller` does the running.

    A base class whose hooks do nothing by default (as Ray Tune's ``Searcher``): a policy
    overrides :meth:`shapes`, :meth:`ask` and :meth:`on_result`, and whichever others it
    needs. Every hook gets a :class:`ControllerView`, never the controller itself.
    """

    #: Whether metric events are polled while executions run (a pruner needs them).
    poll_metrics: bool = False
    #: How long actors hold finished executions' dataset rows (None: write at once).
    batch_rows_s: float | None = None

    def shapes(self) -> Sequence[ResourceShape]:
        """The resource shapes executions will ask for, checked before anything runs."""
        raise NotImplementedError

    def slots(self, cluster: ClusterInfo) -> int | None:
        """How many executions may be in flight at once; None for no limit of the controller's."""
        return None

    def start(self, view: ControllerView) -> None:
        """Create or load the run's state; on resume settle what a killed driver left."""

    def ask(self, view: ControllerView, free: int) -> list[Launch]:
        """Up to ``free`` executions to start now ([] when none is due now)."""
        raise NotImplementedError

    def asked_ahead(self, view: ControllerView, free: int) -> list[Launch]:
        """Executions already decided that may start in slots freed by results not yet told."""
        return []

    def exhausted(self) -> bool:
        """Whether no execution will ever be asked for again (idle actors can go)."""
        return False

    def tick(self, view: ControllerView) -> None:
        """Called once per turn of the loop, before it waits (progress reports)."""

    def on_events(self, view: ControllerView, key: Hashable, events: list[MetricEvent]) -> None:
        """Metric events an execution printed since the last poll (only with ``poll_metrics``)."""

    def on_result(self, view: ControllerView, key: Hashable, record: ExecutionRecord) -> None:
        """An execution ended (its actor's death included, as ``crashed``)."""
        raise NotImplementedError

    def end(self, view: ControllerView, status: Status) -> Status:
        """Persist the run's end, always called once; returns the status the run ends with."""
        return status


@dataclass(frozen=True)
class RayCalls:
    """What a :class:`Controller` asks of Ray, Ray's own functions by default.

    ``connect`` gives the cluster, ``pool`` makes the :class:`ActorPool` (called as the
    class is), ``wait`` and ``get`` are ``ray.wait`` and ``ray.get`` on the pool's refs. A
    test gives fakes and runs the loop without Ray (a store on an embedded cluster is
    linked without Ray too).
    """

    connect: Callable[[str | None], ClusterInfo] = connect
    pool: Callable[..., ActorPool] = ActorPool
    wait: Callable[..., tuple[list[Any], list[Any]]] = ray.wait
    get: Callable[..., Any] = ray.get


class Controller:
    """Connects, checks capacity, owns the actors and the ``ray.wait`` loop, stops, recovers.

    Each of those goes through ``calls`` (:class:`RayCalls`), Ray itself unless a test says.
    """

    def __init__(
        self,
        store: RecordStore,
        *,
        address: str | None,
        runtime: str,
        fresh_actors: bool = False,
        calls: RayCalls = RayCalls(),
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
        self._ray = calls
        self._groups = Groups()

    @property
    def cluster(self) -> ClusterInfo:
        """The cluster :meth:`run` connected to."""
        if self._cluster is None:
            raise RuntimeError("the controller is not running")
        return self._cluster

    @property
    def in_flight(self) -> Collection[Hashable]:
        """The keys of the executions running now."""
        return [handle.key for handle in self._in_flight.values()]

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop_all` or :meth:`fail` ended the asking."""
        return self._stopping

    def run(self, policy: Policy) -> Status:
        """Run the policy's executions to the end: COMPLETE, FAILED or INTERRUPTED (Ctrl-C re-raised)."""
        view: ControllerView = _View(self)
        self._cluster = self._ray.connect(self.address)
        for shape in policy.shapes():
            self._cluster.check_fits(shape.cpus, shape.gpus)
        slots = policy.slots(self._cluster)
        # Before anything starts: how each node reaches the store (directly or through the
        # driver), and whether local inputs must travel through it.
        self._link = link = link_store(self.store, self._cluster)
        pool = self._ray.pool(
            link.access,
            self.runtime,
            fresh_actors=self.fresh_actors,
            # a policy may have its actors batch their dataset rows (a sweep does)
            batch_rows_s=policy.batch_rows_s,
        )
        shapes = policy.shapes()
        if slots is not None and len(shapes) == 1:
            # the actors' processes boot while the policy starts (a sweep opens its study
            # and asks its first trials): the first executions do not wait for both in turn
            pool.prestart(shapes[0], slots)
        try:
            policy.start(view)
        except BaseException:  # nothing ran: the actors, the probe file and the service go now
            pool.shutdown()
            link.close()
            raise
        say_notes()  # which Ray is used, now that the input was accepted
        status = Status.FAILED  # what end() hears when the loop raised (a policy's bug)
        try:
            self._loop(policy, view, pool, slots)
            status = self._status
        except KeyboardInterrupt:
            status = Status.INTERRUPTED
            self._interrupt()
            raise
        finally:
            self._groups.close()
            pool.shutdown()
            try:
                status = policy.end(view, status)
            finally:
                link.close()
        return status

    def _loop(
        self, policy: Policy, view: ControllerView, pool: ActorPool, slots: int | None
    ) -> None:
        while True:
            if not self._stopping:
                free = slots - len(self._in_flight) if slots is not None else 1 << 30
                if free > 0:
                    for launch in policy.ask(view, free):
                        self._submit(pool, launch)
                if self._tell_unplaced(policy, view):
                    continue  # the policy may start other work now (a pipeline's other nodes)
            if self._stopping or policy.exhausted():
                pool.trim(keep=0)  # no more work for idle actors: give their resources back
            policy.tick(view)
            self._groups.tick()
            if not self._in_flight:
                return
            ready, _ = self._ray.wait(
                list(self._in_flight),
                num_returns=1,
                timeout=0.25 if policy.poll_metrics else 1.0,
            )
            if policy.poll_metrics:
                for handle, events in self._poll_events():
                    policy.on_events(view, handle.key, events)
            finished = []
            for ref in ready:  # each actor back in the pool first, for what starts next
                handle = self._in_flight.pop(ref)
                finished.append((handle, self._result(pool, handle)))
            if finished and slots is not None and not self._stopping:
                # what the policy already asked starts before the results are told: a freed
                # slot does not wait for the policy's bookkeeping (a sweep's Optuna tell)
                for launch in policy.asked_ahead(view, slots - len(self._in_flight)):
                    self._submit(pool, launch)
            for handle, record in finished:
                self._groups.ended(handle, record)
                policy.on_result(view, handle.key, record)
            if self._stopping:
                # again after each result: a stop sent before an actor's run began is lost
                for handle in self._in_flight.values():
                    handle.actor.stop.remote(Status.STOPPED)

    def _submit(self, pool: ActorPool, launch: Launch) -> None:
        if launch.group is not None:
            self._submit_group(launch)
            return
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

    def _submit_group(self, launch: Launch) -> None:
        """Hold a group member's launch until its whole group is asked, then start them all."""
        launches = self._groups.add(launch)
        if not launches or self._link is None:
            return
        link = self._link
        specs = [link.stage(member.spec) for member in launches]
        for handle in self._groups.start(launches, self.cluster, link.access, self.runtime, specs):
            self._in_flight[handle.ref] = handle

    def _tell_unplaced(self, policy: Policy, view: ControllerView) -> bool:
        """Tell the policy the members of groups that could not be placed, recorded failed."""
        uses_images = get_runtime(self.runtime).uses_images
        unplaced = self._groups.take_unplaced(self.store, with_image=uses_images)
        for key, record in unplaced:
            policy.on_result(view, key, record)
        return bool(unplaced)

    def _poll_events(self) -> Iterator[tuple[TrialHandle, list[MetricEvent]]]:
        pending = [
            (h, h.actor.take_events.remote(h.execution_id))
            for h in self._in_flight.values()
            if not h.stopping
        ]
        for handle, ref in pending:
            try:
                events = self._ray.get(ref, timeout=EVENTS_TIMEOUT_S)
            except Exception:  # a busy or dying actor: its events come with the next poll
                continue
            yield handle, events

    def _result(self, pool: ActorPool, handle: TrialHandle) -> ExecutionRecord:
        try:
            record: ExecutionRecord = self._ray.get(handle.ref)
        except Exception as exc:  # the actor or its node died: an infrastructure failure
            self._release(pool, handle, healthy=False)
            reason = f"the Ray actor running it died: {type(exc).__name__}: {str(exc)[:300]}"
            context = handle.context
            # what the driver knows, for an actor that died before it wrote a record
            planned = planned_record(
                handle.spec,
                handle.execution_id,
                context,
                with_image=get_runtime(self.runtime).uses_images,
            )
            return recovery.mark_crashed(
                self.store,
                handle.execution_id,
                reason,
                sweep_id=context.sweep_id,
                pipeline_run_id=context.pipeline_run_id,
                planned=planned,
            )
        self._release(pool, handle)
        return record

    def _release(self, pool: ActorPool, handle: TrialHandle, *, healthy: bool = True) -> None:
        if not self._groups.owns(handle):  # a group member's actor goes with its group
            pool.release(handle, healthy=healthy)

    def _interrupt(self) -> None:
        refs = list(self._in_flight)
        for handle in self._in_flight.values():
            try:
                handle.actor.stop.remote(Status.STOPPED)
            except Exception:
                pass
        try:
            self._ray.wait(refs, num_returns=len(refs), timeout=INTERRUPT_WAIT_S)
        except Exception:
            pass

    def stop(self, key: Hashable, reason: Status = Status.STOPPED, failed: Failed = None) -> None:
        """Stop the execution of ``key`` (see :meth:`ControllerView.stop`)."""
        kind, message = failed or (None, None)
        for handle in self._in_flight.values():
            if handle.key == key:
                handle.stopping = True
                handle.actor.stop.remote(reason, message, kind)

    def stop_all(self) -> None:
        """Stop every execution in flight and ask the policy for no more."""
        self._stopping = True
        for handle in self._in_flight.values():
            handle.actor.stop.remote(Status.STOPPED)

    def fail(self, status: Status = Status.FAILED) -> None:
        """End the run with ``status`` once what is in flight has stopped."""
        self._status = status
        self.stop_all()


class _View:
    """The :class:`ControllerView` a controller hands its policy: these members and no more."""

    __slots__ = ("_controller",)

    def __init__(self, controller: Controller) -> None:
        self._controller = controller

    @property
    def cluster(self) -> ClusterInfo:
        return self._controller.cluster

    @property
    def in_flight(self) -> Collection[Hashable]:
        return self._controller.in_flight

    @property
    def stopping(self) -> bool:
        return self._controller.stopping

    def stop(self, key: Hashable, reason: Status = Status.STOPPED, failed: Failed = None) -> None:
        self._controller.stop(key, reason, failed)

    def stop_all(self) -> None:
        self._controller.stop_all()

    def fail(self, status: Status = Status.FAILED) -> None:
        self._controller.fail(status)
