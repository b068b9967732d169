"""The forecast model on synthetic durations: pure functions, no sweep (fast)."""

from __future__ import annotations

import random

import pytest

from sweeper.forecast import DurationModel, FinishedTrial, RunningTrial, forecast
from sweeper.forecast.simulate import start_gaps


def _trials(count: int, *, seed: int = 1) -> list[FinishedTrial]:
    """Trials whose duration is 2 s per epoch, give or take 10%; lr does not matter."""
    rng = random.Random(seed)
    trials = []
    for _ in range(count):
        epochs = rng.randint(1, 10)
        duration = 2.0 * epochs * rng.lognormvariate(0, 0.1)
        params = {"epochs": epochs, "lr": rng.random()}
        trials.append(FinishedTrial(params, duration, cpu_s=duration * 0.9, value=rng.random()))
    return trials


def test_duration_follows_the_parameter_that_drives_it() -> None:
    trials = _trials(30)
    model = DurationModel.fit([t.params for t in trials], [t.duration_s for t in trials])
    assert "epochs" in model.uses
    assert model.median({"epochs": 8, "lr": 0.5}) == pytest.approx(16.0, rel=0.2)
    assert model.median({"epochs": 1, "lr": 0.5}) == pytest.approx(2.0, rel=0.2)


def test_too_few_trials_fall_back_to_the_median() -> None:
    model = DurationModel.fit([{"epochs": 1}, {"epochs": 9}], [2.0, 18.0])
    assert model.uses == ()
    assert model.median({"epochs": 100}) == pytest.approx(6.0, rel=0.01)


def test_time_to_finish_brackets_the_work_left() -> None:
    trials = _trials(30)
    recent = [t.duration_s for t in trials[-20:]]  # the parameters the sampler picks now
    work = sum(recent) / len(recent) * 40  # 40 trials' seconds, over 4 slots
    result = forecast(trials, [RunningTrial({"epochs": 5}, 3.0)], 40, 4)
    assert result.seconds_p10 is not None and result.seconds_p90 is not None
    assert result.seconds_p10 * 0.9 < work / 4 < result.seconds_p90
    assert result.seconds_p10 <= result.seconds_p50 <= result.seconds_p90  # type: ignore[operator]
    # 0.9 CPU-seconds per second of each trial's run
    assert result.cpu_hours == pytest.approx(0.9 * work / 3600, rel=0.25)
    assert result.unsure == ()


def test_more_slots_finish_sooner_and_the_same_input_gives_the_same_forecast() -> None:
    trials = _trials(30)
    one, four = forecast(trials, [], 20, 1), forecast(trials, [], 20, 4)
    assert four.seconds_p50 < one.seconds_p50 / 2  # type: ignore[operator]
    assert forecast(trials, [], 20, 4) == four


def test_a_running_trial_past_its_usual_time_still_counts_some_time_left() -> None:
    result = forecast(_trials(30), [RunningTrial({"epochs": 10}, 19.0)], 0, 1)
    assert result.seconds_p50 is not None and 0 < result.seconds_p50 < 10


def test_few_own_trials_borrow_earlier_sweeps_and_say_so() -> None:
    own = _trials(2, seed=2)
    result = forecast(own, [], 10, 2, prior=_trials(20, seed=3))
    assert result.borrowed == 20 and result.learned_from == 2
    assert any("only 2 trials finished" in why for why in result.unsure)
    assert forecast([], [], 10, 2).seconds_p50 is None


def test_target_chance_rises_with_the_trials_left() -> None:
    trials = _trials(30)
    few = forecast(trials, [], 2, 2, target=(0.999, "maximize")).target
    many = forecast(trials, [], 200, 2, target=(0.999, "maximize")).target
    assert few is not None and many is not None
    assert 0 <= few.chance < many.chance <= 1
    reached = forecast(trials, [], 2, 2, target=(0.5, "maximize")).target
    assert reached is not None and reached.reached and reached.chance == 1.0


def test_the_time_between_trials_on_a_slot_counts_in_the_forecast() -> None:
    """Two slots, 1-s trials, each started 0.5 s after a slot freed: the gap is learned and
    the rest takes its trials plus their gaps, not the trials alone."""
    trials, free = [], [0.0, 0.25]
    for _ in range(12):
        slot = free.index(min(free))
        start = free[slot] + 0.5
        trials.append(FinishedTrial({}, 1.0, span=(start, start + 1.0)))
        free[slot] = start + 1.0
    assert start_gaps(trials, 2) == pytest.approx([0.5] * 10)
    timed = forecast(trials, [], 20, 2)
    untimed = forecast([FinishedTrial({}, 1.0)] * 12, [], 20, 2)
    assert untimed.seconds_p50 == pytest.approx(10.0, rel=0.05)  # 10 trials per slot, 1 s each
    assert timed.seconds_p50 == pytest.approx(15.0, rel=0.05)  # and 0.5 s before each
