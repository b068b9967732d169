"""The :class:`Controller`'s loop with a fake policy and no Ray.

The controller takes what it asks of Ray as a :class:`RayCalls` (``connect``, ``pool``,
``wait``, ``get``); here they are a :class:`FakeCluster`'s, which runs executions by hand: each ``wait``
finishes the oldest execution in flight, an execution that was stopped ends with the stop's
reason, and an execution whose actor "dies" makes ``get`` raise as Ray does. The store is
a real local one (the crashed record of a dead actor is written there).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sweeper.cluster.actors import ResourceShape, TrialHandle
from sweeper.cluster.connect import ClusterInfo
from sweeper.cluster.controller import Controller, ControllerView, Launch, Policy, RayCalls
from sweeper.execution.runner import ExecutionContext
from sweeper.execution.spec import ExecutionSpec
from sweeper.record import ExecutionRecord, MetricEvent
from sweeper.status import Status
from sweeper.store import Store


@dataclass(frozen=True)
class Ref:
    """What the fake pool hands out: a result ref, or the ref of an actor's events."""

    key: Hashable
    execution_id: str
    events: bool = False


class _Method:
    """One actor method as Ray presents it: ``actor.method.remote(...)``."""

    def __init__(self, call: Callable[..., Any]) -> None:
        self.remote = call


class FakeActor:
    """An execution actor: ``stop`` is logged, ``take_events`` hands out an events ref."""

    def __init__(self, cluster: FakeCluster, key: Hashable, execution_id: str) -> None:
        self.stop = _Method(lambda reason=Status.STOPPED, *_: cluster.stop(key, reason))
        self.take_events = _Method(lambda *_: Ref(key, execution_id, events=True))


@dataclass
class FakeCluster:
    """Ray as the controller sees it, run by hand; ``log`` says what happened in order."""

    dead: set[Hashable] = field(default_factory=set)  # keys whose actor dies
    interrupt_on_wait: int | None = None  # which wait is Ctrl-C'd (1 = the first)
    log: list[tuple[Any, ...]] = field(default_factory=list)
    live: set[Hashable] = field(default_factory=set)
    peak: int = 0
    waits: int = 0
    stopped: dict[Hashable, Status] = field(default_factory=dict)

    def connect(self, address: str | None) -> ClusterInfo:
        # an embedded cluster: the store is linked directly, without Ray
        return ClusterInfo(address="fake", embedded=True, nodes=[{"CPU": 8.0, "GPU": 0.0}])

    def pool(self, access: Any, runtime: str, **options: Any) -> FakePool:
        return FakePool(self)

    def wait(self, refs: list[Ref], *, num_returns: int, timeout: float) -> tuple[list, list]:
        self.waits += 1
        if self.waits == self.interrupt_on_wait:
            raise KeyboardInterrupt(f"Ctrl-C at wait {self.waits}")
        return refs[:num_returns], refs[num_returns:]  # the oldest first

    def get(self, ref: Ref, timeout: float | None = None) -> Any:
        if ref.events:
            return [{"step": 1, "loss": 0.5}]
        if ref.key in self.dead:
            raise RuntimeError("ActorDiedError: the actor died unexpectedly")
        status = self.stopped.get(ref.key, Status.COMPLETE)
        return ExecutionRecord(id=ref.execution_id, step="train", status=status)

    def stop(self, key: Hashable, reason: Status) -> None:
        self.log.append(("stop", key, reason))
        self.stopped[key] = reason

    def controller(self, store: Store) -> Controller:
        calls = RayCalls(connect=self.connect, pool=self.pool, wait=self.wait, get=self.get)
        return Controller(store, address=None, runtime="local", calls=calls)


class FakePool:
    """The :class:`ActorPool`'s methods: each execution gets a fake actor and a ref."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster

    def prestart(self, shape: ResourceShape, count: int) -> None:
        pass

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
        cluster = self.cluster
        cluster.log.append(("submit", key))
        cluster.live.add(key)
        cluster.peak = max(cluster.peak, len(cluster.live))
        actor = FakeActor(cluster, key, execution_id)
        return TrialHandle(key, execution_id, spec, context, actor, shape, Ref(key, execution_id))

    def release(self, handle: TrialHandle, *, healthy: bool = True) -> None:
        self.cluster.live.discard(handle.key)
        self.cluster.log.append(("release", handle.key, healthy))

    def trim(self, keep: int) -> None:
        pass

    def shutdown(self) -> None:
        self.cluster.log.append(("shutdown",))


def spec(tmp_path: Path) -> ExecutionSpec:
    return ExecutionSpec(
        step="train",
        step_definition={},
        image=None,
        commands=("true",),
        parameters={},
        inputs={},
        environment={},
        code_version="v1",
        code_archive=None,
        project_dir=str(tmp_path),
        cpus=1.0,
    )


class FakePolicy(Policy):
    """Runs ``keys`` in order, ``slots`` at a time; ``react`` is called on each result."""

    def __init__(
        self,
        tmp_path: Path,
        keys: list[str],
        log: list[tuple[Any, ...]],
        *,
        slots: int | None = 2,
        ahead: bool = False,
        react: Callable[[ControllerView, Hashable], None] | None = None,
    ) -> None:
        self.spec = spec(tmp_path)
        self.todo = list(keys)
        self.log = log
        self._slots = slots
        self.ahead = ahead
        self.react = react
        self.views: list[tuple[str, Any]] = []  # (hook, what it was given)
        self.results: dict[Hashable, ExecutionRecord] = {}
        self.events: list[tuple[Hashable, list[MetricEvent]]] = []

    def _next(self, view: ControllerView, free: int) -> list[Launch]:
        count = min(free, len(self.todo))
        keys, self.todo = self.todo[:count], self.todo[count:]
        return [Launch(key, self.spec, ExecutionContext(node=key)) for key in keys]

    def shapes(self) -> list[ResourceShape]:
        return [ResourceShape(1.0, 0.0)]

    def slots(self, cluster: ClusterInfo) -> int | None:
        return self._slots

    def start(self, view: ControllerView) -> None:
        self.views.append(("start", view))

    def ask(self, view: ControllerView, free: int) -> list[Launch]:
        self.views.append(("ask", view))
        self.log.append(("ask", free))
        return self._next(view, free)

    def asked_ahead(self, view: ControllerView, free: int) -> list[Launch]:
        return self._next(view, free) if self.ahead else []

    def tick(self, view: ControllerView) -> None:
        self.views.append(("tick", view))

    def on_events(self, view: ControllerView, key: Hashable, events: list[MetricEvent]) -> None:
        self.views.append(("on_events", view))
        self.events.append((key, events))

    def on_result(self, view: ControllerView, key: Hashable, record: ExecutionRecord) -> None:
        self.views.append(("on_result", view))
        self.log.append(("result", key))
        self.results[key] = record
        if self.react is not None:
            self.react(view, key)

    def end(self, view: ControllerView, status: Status) -> Status:
        self.views.append(("end", view))
        self.log.append(("end", status))
        return status


def ends(log: list[tuple[Any, ...]]) -> list[Status]:
    return [entry[1] for entry in log if entry[0] == "end"]


def asks(log: list[tuple[Any, ...]]) -> list[int]:
    return [entry[1] for entry in log if entry[0] == "ask"]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "store", create=True)


def test_asks_for_the_free_slots_and_runs_no_more_than_slots(tmp_path: Path, store: Store) -> None:
    cluster = FakeCluster()
    policy = FakePolicy(tmp_path, ["a", "b", "c", "d", "e"], cluster.log, slots=2)
    assert cluster.controller(store).run(policy) is Status.COMPLETE
    assert cluster.peak == 2
    # two at first, then the one slot each result frees, the last when both are free
    assert asks(cluster.log) == [2, 1, 1, 1, 1, 2]
    assert ends(cluster.log) == [Status.COMPLETE]


def test_each_result_reaches_on_result_with_its_key_and_record(
    tmp_path: Path, store: Store
) -> None:
    cluster = FakeCluster()
    policy = FakePolicy(tmp_path, ["a", "b", "c"], cluster.log)
    cluster.controller(store).run(policy)
    assert sorted(policy.results) == ["a", "b", "c"]
    for key, record in policy.results.items():
        assert isinstance(record, ExecutionRecord)
        assert record.status is Status.COMPLETE
        assert ("release", key, True) in cluster.log


def test_asked_ahead_launches_start_before_the_results_that_freed_them_are_told(
    tmp_path: Path, store: Store
) -> None:
    cluster = FakeCluster()
    policy = FakePolicy(tmp_path, ["a", "b", "c"], cluster.log, slots=1, ahead=True)
    cluster.controller(store).run(policy)
    order = [entry for entry in cluster.log if entry[0] in ("submit", "result")]
    assert order == [
        ("submit", "a"),
        ("submit", "b"),  # in a's slot, before a's result is told
        ("result", "a"),
        ("submit", "c"),
        ("result", "b"),
        ("result", "c"),
    ]
    assert cluster.peak == 1


def test_stop_all_stops_what_is_in_flight_and_asks_no_more(tmp_path: Path, store: Store) -> None:
    cluster = FakeCluster()

    def stop_on_a(view: ControllerView, key: Hashable) -> None:
        if key == "a":
            assert not view.stopping
            view.stop_all()
            assert view.stopping

    policy = FakePolicy(tmp_path, ["a", "b", "c", "d"], cluster.log, react=stop_on_a)
    assert cluster.controller(store).run(policy) is Status.COMPLETE
    assert ("stop", "b", Status.STOPPED) in cluster.log
    assert asks(cluster.log) == [2]  # none after the stop
    assert [entry[1] for entry in cluster.log if entry[0] == "submit"] == ["a", "b"]
    assert policy.results["b"].status is Status.STOPPED
    assert ends(cluster.log) == [Status.COMPLETE]


def test_stop_stops_one_key_with_its_reason(tmp_path: Path, store: Store) -> None:
    cluster = FakeCluster()

    def prune_b(view: ControllerView, key: Hashable) -> None:
        if key == "a":
            assert sorted(view.in_flight) == ["b", "c"]  # no slot limit: all three started
            view.stop("b", Status.PRUNED)

    policy = FakePolicy(tmp_path, ["a", "b", "c"], cluster.log, slots=None, react=prune_b)
    cluster.controller(store).run(policy)
    assert [entry for entry in cluster.log if entry[0] == "stop"] == [("stop", "b", Status.PRUNED)]
    assert policy.results["b"].status is Status.PRUNED


def test_fail_makes_run_return_failed(tmp_path: Path, store: Store) -> None:
    cluster = FakeCluster()

    def fail_on_a(view: ControllerView, key: Hashable) -> None:
        if key == "a":
            view.fail(Status.FAILED)

    policy = FakePolicy(tmp_path, ["a", "b", "c"], cluster.log, react=fail_on_a)
    assert cluster.controller(store).run(policy) is Status.FAILED
    assert ("stop", "b", Status.STOPPED) in cluster.log
    assert ends(cluster.log) == [Status.FAILED]


def test_a_dead_actor_s_result_arrives_as_a_crashed_record(tmp_path: Path, store: Store) -> None:
    cluster = FakeCluster(dead={"b"})
    policy = FakePolicy(tmp_path, ["a", "b"], cluster.log)
    assert cluster.controller(store).run(policy) is Status.COMPLETE
    crashed = policy.results["b"]
    assert crashed.status is Status.CRASHED
    assert "the Ray actor running it died" in (crashed.error or "")
    assert crashed.step == "train"  # what the driver planned: the spec's step
    stored = store.get_record(crashed.id)
    assert stored is not None and stored.status is Status.CRASHED
    assert ("release", "b", False) in cluster.log  # its actor is not given work again
    assert policy.results["a"].status is Status.COMPLETE


def test_ctrl_c_stops_what_is_in_flight_ends_interrupted_and_reraises(
    tmp_path: Path, store: Store
) -> None:
    cluster = FakeCluster(interrupt_on_wait=2)
    policy = FakePolicy(tmp_path, ["a", "b", "c", "d"], cluster.log)
    with pytest.raises(KeyboardInterrupt, match="^Ctrl-C at wait 2$"):  # the fake's own
        cluster.controller(store).run(policy)
    # a finished, c started in its slot; b and c were in flight at Ctrl-C
    assert [entry for entry in cluster.log if entry[0] == "stop"] == [
        ("stop", "b", Status.STOPPED),
        ("stop", "c", Status.STOPPED),
    ]
    assert ends(cluster.log) == [Status.INTERRUPTED]
    assert cluster.log[-2:] == [("shutdown",), ("end", Status.INTERRUPTED)]


def test_end_is_called_once_with_failed_when_a_hook_raises(tmp_path: Path, store: Store) -> None:
    cluster = FakeCluster()

    def broken(view: ControllerView, key: Hashable) -> None:
        raise ValueError("the policy's bookkeeping failed")

    policy = FakePolicy(tmp_path, ["a", "b"], cluster.log, react=broken)
    with pytest.raises(ValueError, match="bookkeeping"):
        cluster.controller(store).run(policy)
    # a run whose policy broke is not saved as complete
    assert ends(cluster.log) == [Status.FAILED]
    assert ("shutdown",) in cluster.log


def test_metric_events_reach_on_events_with_the_key(tmp_path: Path, store: Store) -> None:
    cluster = FakeCluster()
    policy = FakePolicy(tmp_path, ["a"], cluster.log)
    policy.poll_metrics = True
    cluster.controller(store).run(policy)
    assert policy.events == [("a", [{"step": 1, "loss": 0.5}])]


def test_the_policy_sees_a_view_never_the_controller(tmp_path: Path, store: Store) -> None:
    cluster = FakeCluster()

    def look(view: ControllerView, key: Hashable) -> None:
        assert view.cluster.address == "fake"

    policy = FakePolicy(tmp_path, ["a", "b", "c"], cluster.log, react=look)
    policy.poll_metrics = True
    cluster.controller(store).run(policy)
    assert {hook for hook, _ in policy.views} == {
        "start",
        "ask",
        "tick",
        "on_events",
        "on_result",
        "end",
    }
    for hook, view in policy.views:
        assert not isinstance(view, Controller), hook
        for member in ("store", "run", "_in_flight"):
            assert not hasattr(view, member), (hook, member)
