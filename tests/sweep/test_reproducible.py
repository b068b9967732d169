"""Reproducible sweeps on their own: the policy, a real study and store, the controller played
by hand so that the order in which trials finish is chosen by the test (no Ray, no timing).

A seeded sweep with several trials in flight must propose the same parameters whichever
trial finishes first; a driver killed half-way and resumed must go on as the one not killed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sweeper.cluster.controller import Launch
from sweeper.execution.spec import ExecutionSpec
from sweeper.status import Status
from sweeper.store import Store
from sweeper.sweep.plan import SweepOptions
from sweeper.sweep.reproducible import SEED_ENV, trial_seed
from sweeper.sweep.tpe import SweepTPESampler
from tests.sweep.test_policy import STEP, Driver, make_plan

#: Picks which of the running launches finishes next.
Pick = Callable[[list[Launch]], Launch]


def first_asked(running: list[Launch]) -> Launch:
    return running[0]


def last_asked(running: list[Launch]) -> Launch:
    return running[-1]


def shuffled(seed: int) -> Pick:
    rng = random.Random(seed)
    return lambda running: rng.choice(running)


def loss(params: dict[str, Any]) -> float:
    """A smooth objective with its minimum inside the box, so TPE has something to model."""
    return (params["x"] - 0.3) ** 2 + 0.1 * math.sin(20 * params["x"])


def play(driver: Driver, pick: Pick, *, parallel: int, stop_after: int | None = None) -> None:
    """The controller's part: fill the free slots, let ``pick`` choose which trial ends,
    hand back its result; until the sweep is done (or ``stop_after`` results were handed)."""
    policy, view = driver.policy, driver.view
    running: list[Launch] = []
    handed = 0
    while True:
        running += driver.ask(parallel - len(running))
        if not running or (stop_after is not None and handed == stop_after):
            return
        launch = pick(running)
        running.remove(launch)
        # what was asked ahead starts before the result is told, as the controller does it
        running += policy.asked_ahead(view, parallel - len(running))
        for started in running:
            if started.key not in view.running:
                view.running.append(started.key)
        driver.complete(launch, loss=loss(launch.spec.parameters))
        handed += 1


def asked(driver: Driver) -> list[tuple[int, float]]:
    """Every trial's number and parameter, in the order the study numbered them."""
    return [(t.number, t.params["x"]) for t in driver.study.get_trials(deepcopy=False)]


def sweep(
    project: Path, tmp_path: Path, name: str, pick: Pick, *, cpus: int = 8, **options: Any
) -> list[tuple[int, float]]:
    """A 16-trial TPE sweep at --parallel 3 on a cluster of ``cpus`` (1 CPU a trial)."""
    store = Store.open(tmp_path / name, create=True)
    plan = make_plan(project, store, trials=16, sampler="tpe", seed=7, parallel=3, **options)
    driver = Driver(plan, store, cpus=cpus)
    play(driver, pick, parallel=min(3, cpus))
    driver.policy.end(driver.view, Status.COMPLETE)
    return asked(driver)


@pytest.fixture
def project(make_project: Any) -> Path:
    return make_project(STEP, {"train.py": "print('hi')\n"})


def test_a_seeded_parallel_sweep_asks_the_same_whichever_trial_finishes_first(
    project: Path, tmp_path: Path
) -> None:
    fifo = sweep(project, tmp_path, "fifo", first_asked)
    lifo = sweep(project, tmp_path, "lifo", last_asked)
    random_order = sweep(project, tmp_path, "random", shuffled(3))
    assert len(fifo) == 16
    assert lifo == fifo
    assert random_order == fifo
    # the same sweeps told as they finish do differ: the test can see what it checks
    free_fifo = sweep(project, tmp_path, "free-fifo", first_asked, reproducible=False)
    free_lifo = sweep(project, tmp_path, "free-lifo", last_asked, reproducible=False)
    assert free_fifo != free_lifo


def test_a_cluster_with_room_for_fewer_trials_than_the_window_asks_the_same(
    project: Path, tmp_path: Path
) -> None:
    # 2 CPUs for --parallel 3: two trials run at once, the third waits for a slot; whether
    # a slot or a result comes first must not decide what the third is asked with
    wide = sweep(project, tmp_path, "wide", first_asked)
    assert sweep(project, tmp_path, "narrow-fifo", first_asked, cpus=2) == wide
    assert sweep(project, tmp_path, "narrow-lifo", last_asked, cpus=2) == wide
    assert sweep(project, tmp_path, "narrow-random", shuffled(4), cpus=2) == wide


def test_a_resumed_reproducible_sweep_goes_on_as_the_uninterrupted_one(
    project: Path, tmp_path: Path
) -> None:
    whole = sweep(project, tmp_path, "whole", first_asked)

    store = Store.open(tmp_path / "killed", create=True)
    plan = make_plan(project, store, trials=16, sampler="tpe", seed=7, parallel=3)
    killed = Driver(plan, store)
    # trials finish out of turn, then the driver is dropped: held results and trials in
    # flight are all the resumed driver has to go on
    play(killed, last_asked, parallel=3, stop_after=7)
    saved = SweepOptions(**store.get_sweep(plan.sweep_id)["options"])
    resumed = Driver(make_plan(project, store, saved, sweep_id=plan.sweep_id, resume=True), store)
    play(resumed, shuffled(5), parallel=3)
    resumed.policy.end(resumed.view, Status.COMPLETE)
    assert asked(resumed) == whole


def test_each_trial_gets_its_own_seed_from_the_sweep_seed_and_its_number(
    project: Path, tmp_path: Path
) -> None:
    store = Store.open(tmp_path / "store", create=True)
    driver = Driver(make_plan(project, store, trials=3, seed=11, parallel=3), store)
    launches = driver.ask(3)
    seeds = [launch.spec.environment[SEED_ENV] for launch in launches]
    assert seeds == [str(trial_seed(11, n)) for n in (0, 1, 2)]
    assert len(set(seeds)) == 3
    # the seed is not part of what --reuse matches: same parameters, same identity
    spec = launches[0].spec
    other_seed = replace(spec, environment={**spec.environment, SEED_ENV: "1"})
    other_var = replace(spec, environment={**spec.environment, "OTHER": "1"})
    assert identity(other_seed) == identity(spec) != identity(other_var)


def identity(spec: ExecutionSpec) -> str:
    return spec.spec_hash([], None)


class Killed(BaseException):
    """The driver's process ending where it stands (as with kill -9: nothing runs after)."""


def test_a_trial_whose_ask_the_kill_cut_short_gets_the_parameters_it_was_being_given(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A storage writes a trial and then each of its parameters: a driver killed in between
    leaves a running trial without them. The resumed sweep gives it what the killed driver
    was giving it, and goes on as the uninterrupted sweep."""
    whole = sweep(project, tmp_path, "whole", first_asked)
    store = Store.open(tmp_path / "cut", create=True)
    plan = make_plan(project, store, trials=16, sampler="tpe", seed=7, parallel=3)
    killed = Driver(plan, store)
    sample = SweepTPESampler.sample_relative  # the sweep's TPE

    def die_inside_the_ask_of_trial_12(self: Any, study: Any, trial: Any, space: Any) -> Any:
        if trial.number == 12:  # past TPE's 10 startup trials: the model decides
            raise Killed("kill -9 inside the ask of trial 12")
        return sample(self, study, trial, space)

    monkeypatch.setattr(SweepTPESampler, "sample_relative", die_inside_the_ask_of_trial_12)
    with pytest.raises(Killed, match="inside the ask"):
        play(killed, last_asked, parallel=3)
    monkeypatch.undo()
    cut = killed.study.get_trials(deepcopy=False)[-1]
    assert (cut.number, cut.params, cut.state.name) == (12, {}, "RUNNING")

    saved = SweepOptions(**store.get_sweep(plan.sweep_id)["options"])
    resumed = Driver(make_plan(project, store, saved, sweep_id=plan.sweep_id, resume=True), store)
    play(resumed, shuffled(5), parallel=3)
    resumed.policy.end(resumed.view, Status.COMPLETE)
    assert asked(resumed) == whole
