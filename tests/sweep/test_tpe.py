"""sweeper's TPE (finished trials kept between asks) suggests exactly what Optuna's TPE does.

Two studies get the same trials, the same results and the same seeds, one sampled by
Optuna's :class:`~optuna.samplers.TPESampler`, the other by
:class:`~sweeper.sweep.tpe.SweepTPESampler`; every suggestion must be the same number.
The results cover what a sweep tells: complete (with ties), pruned with and without
intermediate values, failed, infeasible (a resource failure's constraint), trials left
running (the constant liar) and finishing out of order.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import optuna
import pytest
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers._tpe.sampler import _RELATIVE_PARAMS_KEY as RELATIVE
from optuna.trial import TrialState

from sweeper.sweep.reproducible import trial_seed
from sweeper.sweep.samplers import make_sampler
from sweeper.sweep.space import SearchSpace
from sweeper.sweep.tpe import SweepTPESampler

SPACE = {
    "x": FloatDistribution(0.0, 1.0),
    "lr": FloatDistribution(1e-5, 1e-1, log=True),
    "n": IntDistribution(1, 9),
    "kind": CategoricalDistribution(["a", "b", "c"]),
}


def _loss(params: dict[str, Any]) -> float:
    return round((params["x"] - 0.3) ** 2 + params["n"] / 50 + (params["kind"] == "b") * 0.1, 2)


def _play(
    make: Callable[[int], optuna.samplers.BaseSampler],
    *,
    trials: int,
    direction: str = "minimize",
    reseed: bool = False,
) -> tuple[list[dict[str, Any]], optuna.Study]:
    """Ask ``trials`` trials, up to three in flight, finishing in a shuffled order with mixed outcomes;
    the parameters of each. ``reseed``: a sampler seeded afresh for every ask (reproducible). Also the study."""
    study = optuna.create_study(direction=direction, sampler=make(1))
    events = random.Random(7)
    in_flight: list[optuna.Trial] = []
    asked: list[dict[str, Any]] = []
    while len(asked) < trials or in_flight:
        if len(asked) < trials and len(in_flight) < 3:
            if reseed:
                sampler = study.sampler
                seed = trial_seed(1, len(asked))
                study.sampler = (
                    sampler.reseeded(seed) if isinstance(sampler, SweepTPESampler) else make(seed)
                )
            trial = study.ask(SPACE)
            asked.append(trial.params)
            in_flight.append(trial)
            continue
        trial = in_flight.pop(events.randrange(len(in_flight)))
        _finish(study, trial, events.random())
    return asked, study


def _kept(study: optuna.Study) -> int:
    """How many finished trials sweeper's sampler kept (it did not leave it to Optuna's code)."""
    sampler = study.sampler
    assert isinstance(sampler, SweepTPESampler)
    kept = sampler._memo(study).finished
    assert kept is not None
    return len(kept.seen)


def _finish(study: optuna.Study, trial: optuna.Trial, roll: float) -> None:
    """End ``trial`` one way or another, as a sweep would tell it."""
    if roll < 0.65:
        study.tell(trial, _loss(trial.params))
    elif roll < 0.75:
        for step in range(int(roll * 100) % 4):
            trial.report(_loss(trial.params) + step, step)
        study.tell(trial, state=TrialState.PRUNED)
    elif roll < 0.85:
        trial.set_constraint("resources", 1.0 + roll)  # oom, time limit: infeasible
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, state=TrialState.FAIL)


def _optuna(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True)


def _sweeper(seed: int) -> optuna.samplers.BaseSampler:
    return SweepTPESampler(seed=seed, constant_liar=True, multivariate=True)


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_suggestions_are_optunas_own(direction: str) -> None:
    expected, _ = _play(_optuna, trials=120, direction=direction)
    asked, study = _play(_sweeper, trials=120, direction=direction)
    assert asked == expected
    assert _kept(study) > 80
    # the values are not copied to system attributes for other askers: a sweep has one
    assert not [k for t in study.trials for k in t.system_attrs if k.startswith(RELATIVE)]


def test_a_sampler_reseeded_for_every_trial_suggests_as_a_fresh_optuna_one() -> None:
    # the reproducible mode: the kept trials and search space go to the next sampler
    expected, _ = _play(_optuna, trials=80, reseed=True)
    asked, study = _play(_sweeper, trials=80, reseed=True)
    assert asked == expected
    assert _kept(study) > 50


def test_a_replayed_copy_of_the_study_is_sampled_apart_from_the_study() -> None:
    # resume after a kill inside an ask: the ask is replayed on an in-memory copy of the
    # study, by a sampler reseeded from the study's own (see left_running.finish_ask)
    def replay(make: Callable[[int], optuna.samplers.BaseSampler]) -> list[dict[str, Any]]:
        storage = optuna.storages.InMemoryStorage()
        optuna.create_study(storage=storage)  # the sweep's study is not the first one
        study = optuna.create_study(storage=storage, sampler=make(1))
        for _ in range(20):
            trial = study.ask(SPACE)
            study.tell(trial, _loss(trial.params))
        copy = optuna.create_study(sampler=study.sampler)
        copy.add_trials(study.get_trials(deepcopy=False)[:-3])
        sampler = copy.sampler
        copy.sampler = sampler.reseeded(5) if isinstance(sampler, SweepTPESampler) else make(5)
        asked = [copy.ask(SPACE).params]
        sampler = study.sampler  # the resumed sweep goes on, reseeded for its next trial
        study.sampler = sampler.reseeded(6) if isinstance(sampler, SweepTPESampler) else make(6)
        asked.append(study.ask(SPACE).params)
        return asked

    assert replay(_sweeper) == replay(_optuna)


def test_several_objectives_are_left_to_optunas_code() -> None:
    def play(make: Callable[[int], optuna.samplers.BaseSampler]) -> list[dict[str, Any]]:
        study = optuna.create_study(directions=["minimize", "maximize"], sampler=make(3))
        for _ in range(30):
            trial = study.ask(SPACE)
            study.tell(trial, [_loss(trial.params), trial.params["x"]])
        return [t.params for t in study.trials]

    assert play(_sweeper) == play(_optuna)


def test_the_sweep_makes_sweepers_tpe() -> None:
    space = SearchSpace(distributions=dict(SPACE))
    sampler = make_sampler("tpe", space, seed=1, objectives=1)
    assert isinstance(sampler, SweepTPESampler)
    assert sampler._constant_liar and sampler._multivariate
