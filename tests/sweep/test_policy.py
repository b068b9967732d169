"""The sweep policy on its own: a fake controller view, a real local store, a real study, no Ray.

Each test plays the controller's part by hand: it asks for launches, writes the records an
actor would write, and hands them back through ``on_result`` (or kills the driver by
dropping the policy and resuming with a new one).
"""

from __future__ import annotations

from collections.abc import Collection, Hashable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from optuna.trial import TrialState

from sweeper.cli.project import project_from
from sweeper.cluster.connect import ClusterInfo
from sweeper.cluster.controller import Launch
from sweeper.execution.runner import planned_record
from sweeper.record import ExecutionRecord
from sweeper.status import Status
from sweeper.store import Store
from sweeper.sweep.engine import open_plan_study
from sweeper.sweep.plan import SweepOptions, SweepPlan, plan_sweep
from sweeper.sweep.policy import SweepPolicy
from sweeper.sweep.study import study_storage

STEP = """
- step:
    name: train
    image: python:3.12
    command: python3 ./train.py {parameters}
    parameters:
      - {name: x, type: float, min: 0, max: 1, default: 0.5}
- task:
    name: until-good
    step: train
    type: random_search
    execution-count: 10
    parameters:
      - name: x
        style: random
        rules: {min: 0, max: 1, count: 10, seed: 1}
    optimization-target-metric: loss
    stop-condition: metadata.score > 0.5
"""


class FakeView:
    """A :class:`~sweeper.cluster.controller.ControllerView` that records what it is asked."""

    def __init__(self, cpus: float = 8) -> None:
        self.cluster = ClusterInfo("local", True, [{"CPU": cpus}])
        self.running: list[Hashable] = []
        self.stopping = False
        self.calls: list[tuple[Any, ...]] = []

    @property
    def in_flight(self) -> Collection[Hashable]:
        return list(self.running)

    def stop(self, key: Hashable, reason: Status = Status.STOPPED) -> None:
        self.calls.append(("stop", key, reason))

    def stop_all(self) -> None:
        self.stopping = True
        self.calls.append(("stop_all",))

    def fail(self, status: Status = Status.FAILED) -> None:
        self.stopping = True
        self.calls.append(("fail", status))


class Driver:
    """A policy with its view, store and plan, and the actor's part (records) played by hand."""

    def __init__(self, plan: SweepPlan, store: Store, cpus: float = 8) -> None:
        self.plan = plan
        self.store = store
        self.view = FakeView(cpus)
        storage = study_storage(store, plan.sweep_id, None, writer=True)
        self.policy = SweepPolicy(plan, store, lambda: open_plan_study(plan, store, storage))
        if plan.parallel:  # as the controller does: the slots are known before the start
            self.policy.slots(self.view.cluster)
        self.policy.start(self.view)

    @property
    def study(self) -> Any:
        return self.policy.study

    def ask(self, free: int) -> list[Launch]:
        launches = self.policy.ask(self.view, free)
        self.view.running += [launch.key for launch in launches]
        return launches

    def record(self, launch: Launch, status: Status, **fields: Any) -> ExecutionRecord:
        """The record an actor writes for ``launch`` (``started``, or how it ended)."""
        planned = planned_record(launch.spec, launch.execution_id, launch.context, with_image=False)
        record = replace(planned, status=status, **fields)
        self.store.put_record(record)
        return record

    def end(self, launch: Launch, status: Status, **fields: Any) -> ExecutionRecord:
        """``launch`` ended this way: its record is written and handed to the policy."""
        record = self.record(launch, status, **fields)
        self.view.running.remove(launch.key)
        self.policy.on_result(self.view, launch.key, record)
        return record

    def complete(self, launch: Launch, **metrics: float) -> ExecutionRecord:
        return self.end(launch, Status.COMPLETE, exit_code=0, metrics=metrics)


@pytest.fixture
def project(make_project: Any) -> Path:
    return make_project(STEP, {"train.py": "print('hi')\n"})


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "store", create=True)


def make_plan(
    project: Path, store: Store, saved: SweepOptions | None = None, **options: Any
) -> SweepPlan:
    """The plan of a new sweep of ``train`` (4 trials by default), or of ``saved`` resumed."""
    config = project_from(str(project / "valohai.yaml"), None).config
    if saved is None:
        given = {"trials": 4, "metrics": ["loss"], "sampler": "random", "seed": 1, **options}
        return plan_sweep(
            SweepOptions(step="train", **given),
            config=config,
            project_dir=project,
            store=store,
            code_version="v1",
            code_archive=None,
        )
    return plan_sweep(
        saved,
        config=config,
        project_dir=project,
        store=store,
        code_version="v1",
        code_archive=None,
        **options,
    )


def test_ask_launches_up_to_free_and_never_beyond_the_trials(project: Path, store: Store) -> None:
    driver = Driver(make_plan(project, store, trials=3), store)
    first = driver.ask(2)
    assert len(first) == 2
    assert len(driver.ask(5)) == 1  # 3 trials: one more, though five slots are free
    assert driver.ask(5) == [] and driver.policy.exhausted()
    driver.complete(first[0], loss=0.5)
    assert driver.ask(5) == []  # the finished trial counts: none is asked in its place
    assert [t.number for t in driver.study.trials] == [0, 1, 2]


def test_a_complete_result_is_told_and_becomes_the_best(project: Path, store: Store) -> None:
    driver = Driver(make_plan(project, store), store)
    launches = driver.ask(3)
    driver.complete(launches[0], loss=0.5)
    driver.complete(launches[1], loss=0.2)
    driver.complete(launches[2], loss=0.9)  # worse: the best stays
    trials = driver.study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert [t.values for t in trials] == [[0.5], [0.2], [0.9]]
    assert driver.policy.tally.best == 0.2
    assert driver.policy.tally.counts == {"complete": 3}


def test_an_infrastructure_failure_is_retried_with_the_same_parameters(
    project: Path, store: Store
) -> None:
    driver = Driver(make_plan(project, store, trials=1, max_retries=1), store)
    (first,) = driver.ask(1)
    crashed = "the Ray actor running it died: ActorDiedError: gone"
    driver.end(first, Status.CRASHED, error=crashed)
    assert driver.study.trials[0].user_attrs["outcome"] == "crashed"
    assert driver.policy.tally.counts == {"crashed": 1}  # not counted: the trial runs again
    (retry,) = driver.ask(1)
    assert retry.spec.parameters == first.spec.parameters
    assert retry.context.attempt == 2
    driver.end(retry, Status.CRASHED, error=crashed)  # the retries are used up
    trial = driver.study.trials[1]
    assert trial.state == TrialState.FAIL and trial.user_attrs["failure_class"] == "infrastructure"
    assert trial.user_attrs["reason"].startswith("crashed 2 times: the Ray actor")
    assert driver.policy.tally.counts == {"crashed": 1, "error": 1}
    assert driver.ask(1) == [] and len(driver.study.trials) == 2


def test_an_oom_is_told_infeasible_and_not_counted_towards_max_failures(
    project: Path, store: Store
) -> None:
    driver = Driver(make_plan(project, store, max_failures=0), store)
    launches = driver.ask(2)
    driver.end(launches[0], Status.ERROR, exit_code=137, error="exit code 137")
    trial = driver.study.trials[0]
    assert trial.state == TrialState.PRUNED  # infeasible, so that TPE avoids the region
    assert trial.user_attrs["outcome"] == "error" and trial.user_attrs["failure_class"] == "oom"
    assert trial.constraints == {"resources": 1.0}
    assert driver.policy.tally.counted_failures() == 0 and driver.view.calls == []
    driver.end(launches[1], Status.ERROR, exit_code=1, error="exit code 1")
    assert driver.view.calls == [("fail", Status.FAILED)]  # a user error is one too many


def test_more_failures_than_max_failures_fail_the_sweep(project: Path, store: Store) -> None:
    driver = Driver(make_plan(project, store, max_failures=1), store)
    launches = driver.ask(3)
    driver.end(launches[0], Status.ERROR, exit_code=1, error="exit code 1")
    assert driver.view.calls == []
    driver.end(launches[1], Status.ERROR, exit_code=1, error="exit code 1")
    assert driver.view.calls == [("fail", Status.FAILED)]
    assert driver.ask(1) == []  # a failing sweep asks no more


def test_the_stop_condition_stops_every_trial(project: Path, store: Store) -> None:
    driver = Driver(make_plan(project, store, task="until-good", metrics=[]), store)
    launches = driver.ask(3)
    driver.complete(launches[0], loss=0.5, score=0.3)
    assert driver.view.calls == []
    driver.complete(launches[1], loss=0.4, score=0.7)
    assert driver.view.calls == [("stop_all",)]


def test_a_trial_behind_the_others_is_pruned(project: Path, store: Store) -> None:
    driver = Driver(make_plan(project, store, trials=5, pruner="median"), store)
    launches = driver.ask(4)

    def report(launch: Launch, value: float) -> None:
        events = [{"time": "t", "values": {"loss": value, "epoch": e}} for e in range(3)]
        driver.policy.on_events(driver.view, launch.key, events)

    for launch in launches[:3]:
        report(launch, 0.1)
        driver.complete(launch, loss=0.1)
    assert driver.view.calls == []
    report(launches[3], 5.0)
    assert driver.view.calls == [("stop", launches[3].key, Status.PRUNED)]
    driver.end(launches[3], Status.PRUNED)
    assert driver.study.trials[3].state == TrialState.PRUNED
    assert driver.policy.tally.counts == {"complete": 3, "pruned": 1}


def test_resume_settles_what_a_killed_driver_left_running(project: Path, store: Store) -> None:
    plan = make_plan(project, store)
    killed = Driver(plan, store)
    done, running = killed.ask(2)
    # the driver dies: one trial had finished (its record says so), one was still running
    killed.record(done, Status.COMPLETE, exit_code=0, metrics={"loss": 0.25})
    killed.record(running, Status.STARTED)
    saved = SweepOptions(**store.get_sweep(plan.sweep_id)["options"])
    resumed = Driver(make_plan(project, store, saved, sweep_id=plan.sweep_id, resume=True), store)
    first, second = resumed.study.trials[:2]
    assert first.state == TrialState.COMPLETE and first.values == [0.25]
    assert second.state == TrialState.FAIL and second.user_attrs["outcome"] == "interrupted"
    assert resumed.policy.tally.counts == {"complete": 1, "interrupted": 1, "waiting": 1}
    assert resumed.policy.tally.best == 0.25
    crashed = store.get_record(running.execution_id)
    assert crashed is not None and crashed.status is Status.CRASHED
    # the interrupted trial runs again first, with its parameters, as its second attempt
    again = resumed.ask(1)[0]
    assert again.spec.parameters == running.spec.parameters and again.context.attempt == 2
