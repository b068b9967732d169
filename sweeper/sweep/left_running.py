"""Trials a killed driver left RUNNING in the study, settled when the sweep resumes.

Each had an execution (its id in the trial's user attributes) or had only been asked.
``recovery.settle`` first makes its record and rows whole (rows a killed writer never wrote
are written, a container it left is removed); then a finished record means what it would have
meant to the killed driver, and any other trial runs again with the same parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

from sweeper.cluster import recovery
from sweeper.record import ExecutionRecord
from sweeper.status import Status
from sweeper.store import RecordStore
from sweeper.sweep.history import trial_distributions
from sweeper.sweep.outcomes import Outcome, resumed_outcome
from sweeper.sweep.plan import SweepPlan
from sweeper.sweep.reproducible import TOLD_BELOW_ATTR, InOrder, reseed

#: The reason a re-run trial's first execution is crashed with.
DRIVER_STOPPED = "the sweep driver stopped while it ran; re-run on resume"


def settle_left_running(
    study: optuna.Study,
    store: RecordStore,
    plan: SweepPlan,
    log_tail: Callable[[ExecutionRecord], str],
) -> Iterator[tuple[optuna.Trial, Outcome]]:
    """Each trial left running and what to tell of it: its record's outcome, or interrupted
    (then :func:`~sweeper.sweep.outcomes.tell` enqueues its re-run as a new trial)."""
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        execution_id = frozen.user_attrs.get("execution_id")
        record = recovery.settle(store, execution_id) if execution_id else None
        outcome = resumed_outcome(
            record,
            frozen,
            metrics=plan.metrics,
            max_retries=plan.max_retries,
            log_text=partial(log_tail, record) if record is not None else lambda: "",
        )
        if outcome.status is Status.INTERRUPTED and record is not None:
            recovery.crash(store, record, DRIVER_STOPPED)
        yield optuna.Trial(study, frozen._trial_id), outcome


def rerun_in_order(
    study: optuna.Study, store: RecordStore, order: InOrder, plan: SweepPlan
) -> list[optuna.Trial]:
    """Reproducible: the trials left running, in the order they were asked, added to ``order``.

    Those that ended are held for their turn; the others are returned to run again as the
    same trial (its parameters, the next attempt), so the sweep goes on as if its driver had
    not been killed: nothing is told out of turn, nothing asked that would not have been.
    A trial without all its parameters (the driver was killed inside its ask: a storage
    writes the trial, then each parameter) is given them by :func:`finish_ask`; when that
    cannot be done it never ran and ends interrupted, which does not count.
    """
    rerun = []
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for frozen in running:
        trial = optuna.Trial(study, frozen._trial_id)
        execution_id = frozen.user_attrs.get("execution_id")
        if execution_id is None and not finish_ask(study, plan, frozen):
            trial.set_user_attr("outcome", Status.INTERRUPTED)
            study.tell(trial, state=TrialState.FAIL)
            continue
        if TOLD_BELOW_ATTR not in frozen.user_attrs:  # asked when the oldest untold was
            trial.set_user_attr(TOLD_BELOW_ATTR, running[0].number)
        record = recovery.settle(store, execution_id) if execution_id else None
        order.add(trial)
        if record is not None and record.is_final and record.status is not Status.STOPPED:
            order.hold(trial, record)
            continue
        if record is not None:
            recovery.crash(store, record, DRIVER_STOPPED)
        # one asked ahead never ran: the same attempt; one that ran: the next
        trial.set_user_attr(
            "attempt", int(frozen.user_attrs.get("attempt", 1)) + bool(execution_id)
        )
        rerun.append(trial)
    return rerun


def finish_ask(study: optuna.Study, plan: SweepPlan, cut: FrozenTrial) -> bool:
    """Give trial ``cut`` the parameters its ask was giving it when the driver was killed.

    Nothing was told since (the driver died inside the ask), so the study holds what it held
    then: the ask is replayed on an in-memory copy of every earlier trial, the sampler seeded
    for ``cut``'s number as the killed driver seeded it, and the values it draws are written
    to ``cut``. A retry enqueued with its parameters takes them again. False when the ask
    cannot be replayed: ``cut`` is not the last trial the study holds.
    """
    distributions = trial_distributions(plan.space)
    if set(distributions) <= set(cut.params):  # asked whole, then held for a free slot
        return True
    values: dict[str, Any] = {}
    if "fixed_params" not in cut.system_attrs:  # Optuna's key for an enqueued trial's values
        trials = study.get_trials(deepcopy=False)
        if trials[-1].number != cut.number:
            return False
        replay = optuna.create_study(directions=study.directions, sampler=study.sampler)
        replay.add_trials(trials[:-1])
        reseed(replay, plan, cut.number)
        values = replay.ask(distributions).params
    sampler = study.sampler
    study.sampler = _Replayed(values, sampler)
    try:
        trial = optuna.Trial(study, cut._trial_id)
        for name, distribution in distributions.items():
            _suggest(trial, name, distribution)
    finally:
        study.sampler = sampler
    return True


class _Replayed(optuna.samplers.BaseSampler):
    """The values a replayed ask drew, given again; any other from ``base`` (an enqueued
    trial's own values win over both, as in any ask)."""

    def __init__(self, values: Mapping[str, Any], base: optuna.samplers.BaseSampler) -> None:
        self.values = values
        self.base = base

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, name: str, distribution: BaseDistribution
    ) -> Any:
        if name in self.values:
            return self.values[name]
        return self.base.sample_independent(study, trial, name, distribution)


def _suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    """``trial``'s value of ``name``, suggested through the public call its distribution has."""
    if isinstance(distribution, FloatDistribution):
        low, high = distribution.low, distribution.high
        return trial.suggest_float(name, low, high, step=distribution.step, log=distribution.log)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    assert isinstance(distribution, CategoricalDistribution), distribution
    return trial.suggest_categorical(name, distribution.choices)
