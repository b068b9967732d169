"""The Ray actor that runs executions, and the pool that reuses actors of one shape.

An actor reserves the CPUs/GPUs a step asks for and runs one execution at a time through
:class:`sweeper.execution.Executor`. Starting a Ray worker costs about a second, so the pool
hands a finished actor the next execution of the same resource shape (as Ray Tune's
``reuse_actors`` does); ``fresh_actors=True`` gives every execution a new actor instead.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ray

from sweeper.cluster.store_service import StoreAccess
from sweeper.execution.runner import ExecutionContext, Executor, StopToken
from sweeper.execution.spec import ExecutionSpec
from sweeper.record import ExecutionRecord, MetricEvent
from sweeper.runtime import get_runtime
from sweeper.status import Status

if TYPE_CHECKING:
    from sweeper.config import Step


class ExecutionActor:
    """Holds a trial's resources and runs executions in them, one at a time.

    Threaded (``max_concurrency`` > 1) so that the driver can collect metric events and
    stop the execution while ``run`` is busy.
    """

    def __init__(self, store: StoreAccess, runtime: str, batch_rows_s: float | None = None) -> None:
        # The driver made the store; an actor only opens it, directly or through the driver.
        self.store = store.open()
        if batch_rows_s:
            self.store.buffer_rows(batch_rows_s)
        # An actor that holds rows is flushed before it is killed (ActorPool._flush): its
        # work folders can go on a thread of their own too, so the next execution and the
        # driver do not wait for them.
        self.executor = Executor(
            self.store, get_runtime(runtime), remove_in_background=bool(batch_rows_s)
        )
        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []
        #: The execution whose events ``_events`` holds (the one running, or the last).
        self._running: str | None = None
        self._stop: StopToken | None = None
        #: The port held for a distributed member until its run begins (see reserve_port).
        self._reserved: socket.socket | None = None

    def reserve_port(self) -> tuple[str, int, str]:
        """Reserve a free TCP port on this node for a distributed member: (node IP, port, host).

        The port stays bound until :meth:`run` begins, so no other member placed on this node
        is given it meanwhile; the driver writes it into every member's ``distributed.json``.
        """
        holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        holder.bind(("", 0))
        self._reserved = holder
        return ray.util.get_node_ip_address(), holder.getsockname()[1], socket.gethostname()

    def run(
        self, spec: ExecutionSpec, execution_id: str, context: ExecutionContext, reuse: bool
    ) -> ExecutionRecord:
        """Run one execution to its end and return its record."""
        runtime_context = ray.get_runtime_context()
        gpu_ids = runtime_context.get_accelerator_ids().get("GPU", [])
        context.gpu_ids = tuple(str(g) for g in gpu_ids)
        context.ray_node = runtime_context.get_node_id()
        if self._reserved is not None:  # the member's step binds it now
            self._reserved.close()
            self._reserved = None
        with self._lock:
            self._events = []
            self._running = execution_id
            self._stop = StopToken()
            stop = self._stop
        return self.executor.run(
            spec,
            execution_id=execution_id,
            context=context,
            reuse=reuse,
            stop=stop,
            on_metrics=self._on_metrics,
        )

    def _on_metrics(self, event: MetricEvent) -> None:
        with self._lock:
            self._events.append(dict(event))

    def take_events(self, execution_id: str | None = None) -> list[dict[str, Any]]:
        """The metric events printed since the last call (for pruning), of ``execution_id``
        only: a poll for the next execution that runs before it starts gets nothing, not
        the last epochs of the one before (which would shift its steps, and its pruning)."""
        with self._lock:
            if execution_id is not None and execution_id != self._running:
                return []
            events, self._events = self._events, []
        return events

    def stop(
        self, reason: str = Status.STOPPED, message: str | None = None, kind: str | None = None
    ) -> None:
        """Stop the running execution; ``reason`` (``stopped``/``pruned``) becomes its status
        and ``message``, when given, its error; ``kind``: it failed as that failure class."""
        with self._lock:
            if self._stop is not None:
                self._stop.stop(reason, message, kind)

    def flush(self) -> int:
        """Write the dataset rows this actor holds (before it is killed); how many executions.

        Also waits for the work folders of the executions that ended to be removed.
        """
        self.executor.wait_removed()
        return self.store.flush_rows()

    def node_id(self) -> str:
        """The Ray node this actor lives on."""
        return ray.get_runtime_context().get_node_id()


RemoteExecutionActor = ray.remote(max_concurrency=4)(ExecutionActor)  # type: ignore[call-overload]


#: How long a pool waits for its actors to write the rows they hold before it kills them.
FLUSH_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ResourceShape:
    """What one execution reserves; actors are reused only within one shape."""

    cpus: float
    gpus: float
    memory_mb: int | None = None

    @classmethod
    def of(cls, spec: ExecutionSpec) -> ResourceShape:
        """What an execution of ``spec`` reserves: its CPUs (1 when unset) and its GPUs.

        The one rule for sweeps and pipelines alike; :func:`sweeper.execution.spec.build_spec`
        has already put the step's ``resources`` (or a sweep's per-trial figures) in ``spec``.
        """
        return cls(cpus=float(spec.cpus if spec.cpus is not None else 1), gpus=float(spec.gpus))

    @classmethod
    def of_step(cls, step: Step) -> ResourceShape:
        """The shape of an execution of ``step`` with no override: :meth:`of` its defaults.

        For checks made before any spec exists (does every step of a pipeline fit?), with
        the defaults :func:`~sweeper.execution.spec.build_spec` would use.
        """
        resources = step.resources
        return cls(cpus=float(resources.cpu_min or 1), gpus=float(resources.gpus or 0))


@dataclass
class TrialHandle:
    """One execution in flight: its actor, its result ref and what the driver knows of it."""

    key: Hashable
    execution_id: str
    spec: ExecutionSpec
    context: ExecutionContext
    actor: Any
    shape: ResourceShape
    ref: Any
    started: float = field(default_factory=time.monotonic)
    reported_steps: int = 0
    stopping: bool = False


class ActorPool:
    """Creates, reuses and kills execution actors."""

    def __init__(
        self,
        store: StoreAccess,
        runtime: str,
        *,
        fresh_actors: bool = False,
        batch_rows_s: float | None = None,
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.fresh_actors = fresh_actors
        #: Actors hold finished executions' rows this long (None: each execution writes its own).
        self.batch_rows_s = batch_rows_s
        self._idle: dict[ResourceShape, list[Any]] = {}
        self._all: list[Any] = []
        self._ran: set[Any] = set()  # actors given an execution: only they can hold rows

    def _actor(self, shape: ResourceShape) -> Any:
        idle = self._idle.get(shape)
        if idle:
            return idle.pop()
        options: dict[str, Any] = {"num_cpus": shape.cpus, "num_gpus": shape.gpus}
        if shape.memory_mb:
            options["memory"] = int(shape.memory_mb) * 1024 * 1024
        actor = RemoteExecutionActor.options(**options).remote(
            self.store, self.runtime, self.batch_rows_s
        )
        self._all.append(actor)
        return actor

    def prestart(self, shape: ResourceShape, count: int) -> None:
        """Have ``count`` actors of ``shape`` idle: their processes boot while the caller
        prepares its first executions, instead of after the first submit."""
        actors = [self._actor(shape) for _ in range(count)]
        self._idle.setdefault(shape, []).extend(actors)

    def submit(
        self,
        key: Hashable,
        spec: ExecutionSpec,
        execution_id: str,
        context: ExecutionContext,
        *,
        reuse: bool,
        shape: ResourceShape,
    ) -> TrialHandle:
        """Start ``spec`` on an actor of ``shape``; the handle's ``ref`` resolves to the record."""
        actor = self._actor(shape)
        ref = actor.run.remote(spec, execution_id, context, reuse)
        self._ran.add(actor)
        return TrialHandle(key, execution_id, spec, context, actor, shape, ref)

    def release(self, handle: TrialHandle, *, healthy: bool = True) -> None:
        """Give the actor back for the next execution, or kill it (fresh mode or after a failure)."""
        if self.fresh_actors or not healthy:
            self._kill(handle.actor, flush=healthy)
        else:
            self._idle.setdefault(handle.shape, []).append(handle.actor)

    def trim(self, keep: int) -> None:
        """Kill idle actors beyond ``keep`` so that unused resources go back to the cluster."""
        idle = [a for actors in self._idle.values() for a in actors]
        for actor in idle[keep:]:
            for actors in self._idle.values():
                if actor in actors:
                    actors.remove(actor)
            self._kill(actor)

    def _flush(self, actors: list[Any]) -> None:
        """Have live actors write the rows they hold; one that cannot leaves them to recovery."""
        actors = [actor for actor in actors if actor in self._ran]  # a prestarted one never ran
        if not self.batch_rows_s or not actors:
            return
        refs = [actor.flush.remote() for actor in actors]
        ray.wait(refs, num_returns=len(refs), timeout=FLUSH_TIMEOUT_S)
        for ref in refs:
            try:
                ray.get(ref, timeout=0)
            except Exception:  # dead or too slow: restore_rows rebuilds its rows from the records
                pass

    def _kill(self, actor: Any, *, flush: bool = True) -> None:
        if flush:
            self._flush([actor])
        try:
            ray.kill(actor)
        except Exception:  # already dead: nothing to free
            pass
        self._ran.discard(actor)
        if actor in self._all:
            self._all.remove(actor)

    def shutdown(self) -> None:
        """Kill every actor of the pool (after each has written the rows it holds)."""
        self._flush(list(self._all))
        for actor in list(self._all):
            self._kill(actor, flush=False)
        self._idle.clear()
