"""The pipeline policy on its own: a fake controller view, a real local store, no Ray.

Each test plays the controller by hand: it asks the policy for launches, feeds it the
records the executions would have written, and reads what the policy decided and saved.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sweeper.cluster.connect import ClusterInfo
from sweeper.cluster.controller import Launch
from sweeper.config import parse_config
from sweeper.pipeline.plan import PipelineOptions, PipelinePlan, RunSource
from sweeper.pipeline.policy import RESUME_REASON, PipelinePolicy
from sweeper.pipeline.runner import resume_plan
from sweeper.pipeline.state import PipelineState
from sweeper.record import ExecutionRecord
from sweeper.status import Status
from sweeper.store import Store

CONFIG = """
- step:
    name: probe
    image: python:3.11
    command: python ./probe.py {parameters}
    parameters:
      - {name: x, type: float, default: 0.5}
      - {name: threshold, type: float, default: 0}

- pipeline:
    name: chain
    nodes:
      - {name: first, type: execution, step: probe}
      - {name: second, type: execution, step: probe}
    edges:
      - [first.metadata.score, second.parameter.threshold]

- pipeline:
    name: retry
    nodes:
      - {name: flaky, type: execution, step: probe, on-error: retry}
    edges: []

- pipeline:
    name: stop-all
    nodes:
      - {name: fail, type: execution, step: probe}
      - {name: slow, type: execution, step: probe}
    edges: []
"""


@dataclass
class FakeView:
    """A :class:`~sweeper.cluster.controller.ControllerView` that records what it is asked."""

    cluster: ClusterInfo = field(
        default_factory=lambda: ClusterInfo(address="fake", embedded=True, nodes=[{"CPU": 4.0}])
    )
    in_flight: Collection[Hashable] = field(default_factory=list)
    stopping: bool = False
    calls: list[tuple[object, ...]] = field(default_factory=list)

    def stop(self, key: Hashable, reason: Status = Status.STOPPED) -> None:
        self.calls.append(("stop", key, reason))

    def stop_all(self) -> None:
        self.calls.append(("stop_all",))
        self.stopping = True

    def fail(self, status: Status = Status.FAILED) -> None:
        self.calls.append(("fail", status))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "store", create=True)


def plan_of(pipeline: str, tmp_path: Path, *, max_retries: int = 1) -> PipelinePlan:
    source = RunSource(
        options=PipelineOptions(pipeline=pipeline, max_retries=max_retries),
        config_text=CONFIG,
        config_filename="valohai.yaml",
        project_dir=str(tmp_path),
        code_version="v1",
    )
    return PipelinePlan.build(source, config=parse_config(CONFIG, filename="valohai.yaml"))


def ended(launch: Launch, status: Status, **fields: Any) -> ExecutionRecord:
    """The record the launch's execution would have written when it ended with ``status``."""
    context = launch.context
    return ExecutionRecord(
        id=launch.execution_id,
        step=launch.spec.step,
        status=status,
        parameters=dict(launch.spec.parameters),
        pipeline_run_id=context.pipeline_run_id,
        node=context.node,
        attempt=context.attempt,
        **fields,
    )


def test_the_second_node_starts_when_the_first_completes_with_the_edge_value(
    tmp_path: Path, store: Store
) -> None:
    events: list[str] = []
    plan = plan_of("chain", tmp_path)
    policy = PipelinePolicy(plan, store, on_event=events.append)
    view = FakeView()
    policy.start(view)

    (first,) = policy.ask(view, 8)
    assert first.key == ("first", 0) and first.spec.parameters["threshold"] == 0
    view.in_flight = [first.key]
    assert policy.ask(view, 8) == []  # second waits for first

    view.in_flight = []
    policy.on_result(view, first.key, ended(first, Status.COMPLETE, metrics={"score": 0.25}))
    (second,) = policy.ask(view, 8)
    assert second.key == ("second", 0)
    assert second.spec.parameters["threshold"] == 0.25  # the edge's value
    assert second.context.pipeline_run_id == plan.run_id

    policy.on_result(view, second.key, ended(second, Status.COMPLETE))
    assert policy.ask(view, 8) == []
    assert policy.end(view, Status.COMPLETE) is Status.COMPLETE
    result = policy.result()
    assert result.status is Status.COMPLETE and result.error is None
    assert [n.execution_id for n in result.nodes.values()] == [
        first.execution_id,
        second.execution_id,
    ]
    assert PipelineState.load(store, plan.run_id).result() == result  # saved through the store
    assert events[0] == f"pipeline run {plan.run_id} of chain"
    assert events[-1] == f"pipeline run {plan.run_id}: complete"
    assert view.calls == []


def test_on_error_retry_asks_for_the_node_again(tmp_path: Path, store: Store) -> None:
    events: list[str] = []
    policy = PipelinePolicy(
        plan_of("retry", tmp_path, max_retries=1), store, on_event=events.append
    )
    view = FakeView()
    policy.start(view)

    (launch,) = policy.ask(view, 8)
    policy.on_result(view, launch.key, ended(launch, Status.ERROR, error="boom"))
    assert "node flaky: retrying (attempt 2)" in events
    (again,) = policy.ask(view, 8)
    assert again.key == launch.key and again.execution_id != launch.execution_id
    assert again.context.attempt == 2

    policy.on_result(view, again.key, ended(again, Status.ERROR, error="boom"))  # retries spent
    assert policy.ask(view, 8) == []
    assert policy.end(view, Status.COMPLETE) is Status.ERROR
    node = policy.result().nodes["flaky"]
    assert (node.status, node.execution_id, node.error) == (
        Status.ERROR,
        again.execution_id,
        "boom",
    )


def test_on_error_stop_all_stops_every_execution(tmp_path: Path, store: Store) -> None:
    policy = PipelinePolicy(plan_of("stop-all", tmp_path), store)
    view = FakeView()
    policy.start(view)

    fail, slow = policy.ask(view, 8)
    assert (fail.key, slow.key) == (("fail", 0), ("slow", 0))
    view.in_flight = [slow.key]
    policy.on_result(view, fail.key, ended(fail, Status.ERROR, error="boom"))
    assert view.calls == [("stop_all",)]
    assert policy.ask(view, 8) == []

    view.in_flight = []
    policy.on_result(view, slow.key, ended(slow, Status.STOPPED))
    assert policy.end(view, Status.COMPLETE) is Status.ERROR
    result = policy.result()
    assert result.error == 'node "fail" failed: boom'
    assert {name: node.status for name, node in result.nodes.items()} == {
        "fail": Status.ERROR,
        "slow": Status.STOPPED,
    }


def killed_after_first(tmp_path: Path, store: Store) -> tuple[PipelinePlan, FakeView, Launch]:
    """A "chain" run whose driver died once it had launched the first node's execution."""
    plan = plan_of("chain", tmp_path)
    killed = PipelinePolicy(plan, store)
    view = FakeView()
    killed.start(view)
    (first,) = killed.ask(view, 8)
    return plan, view, first


def test_a_resume_keeps_a_running_child_whose_record_completed(
    tmp_path: Path, store: Store
) -> None:
    plan, view, first = killed_after_first(tmp_path, store)
    # the execution completes and writes its record meanwhile
    store.put_record(ended(first, Status.COMPLETE, metrics={"score": 0.75}))

    resumed = resume_plan(store, plan.run_id)
    assert resumed.resuming and resumed.run_id == plan.run_id
    policy = PipelinePolicy(resumed, store)
    policy.start(view)
    assert policy.state.nodes["first"].children[0].status is Status.COMPLETE
    (second,) = policy.ask(view, 8)  # first is not run again
    assert second.key == ("second", 0) and second.spec.parameters["threshold"] == 0.75
    record = store.get_record(first.execution_id)
    assert record is not None and record.status is Status.COMPLETE


def test_a_resume_crashes_and_reruns_a_child_that_never_finished(
    tmp_path: Path, store: Store
) -> None:
    plan, view, first = killed_after_first(tmp_path, store)
    store.put_record(ended(first, Status.STARTED))  # its runner died with the driver

    policy = PipelinePolicy(resume_plan(store, plan.run_id), store)
    policy.start(view)
    (again,) = policy.ask(view, 8)
    assert again.key == ("first", 0) and again.execution_id != first.execution_id
    assert again.context.attempt == 2
    record = store.get_record(first.execution_id)
    assert record is not None and (record.status, record.error) == (Status.CRASHED, RESUME_REASON)
