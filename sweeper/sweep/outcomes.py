"""What an execution's record means to a sweep's study, written once: a result, a retry, a resume.

:func:`result_outcome` reads a finished trial's :class:`~sweeper.record.ExecutionRecord`
into an :class:`Outcome`; :func:`resumed_outcome` does the same for a trial a killed driver
left running; :func:`tell` tells Optuna. The table they follow:

========================================  =======================  ============  =========
the record                                Optuna is told           outcome       counted
========================================  =======================  ============  =========
complete, every metric printed            COMPLETE, its values     complete      yes
complete, a metric missing                FAIL                     error         yes
pruned                                    PRUNED                   pruned        yes
failed by its resources (oom, time)       PRUNED, infeasible       error         yes [1]
failed by the infrastructure, retries     FAIL, re-run [2]         crashed       no
left
failed by the infrastructure, none left   FAIL                     error         yes
failed otherwise                          FAIL                     error         yes
stopped (the sweep was ending)            FAIL                     stopped       no
none, unfinished or stopped, on resume    FAIL, re-run [2]         interrupted   no
========================================  =======================  ============  =========

[1] told as infeasible, so that TPE avoids the region; not counted towards
``--max-failures``. [2] the same parameters are enqueued as a new trial, which asks before
any other. Counted: towards ``--trials``.

On resume, a study copied from an object store may not know the latest executions:
:func:`adopt_executions` adds them from the records first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState, create_trial

from sweeper.errors import StoreError
from sweeper.execution.ids import new_execution_id
from sweeper.record import ExecutionRecord
from sweeper.status import Status
from sweeper.store import RecordStore
from sweeper.sweep.failures import (
    CLASS_ATTR,
    CONSTRAINT,
    INFRASTRUCTURE,
    RESOURCE_CLASSES,
    failure_class,
    failure_reason,
)
from sweeper.sweep.indexed_storage import grouped_writes
from sweeper.sweep.space import admits
from sweeper.sweep.state import DEFAULT_OUTCOMES

#: What an unranked sweep tells Optuna for every complete trial: Optuna completes a trial
#: only with a value, and a constant one ranks no trial above another.
UNRANKED_VALUE = 0.0
#: Execution ids made this long before the sweep's creation are still looked at on resume
#: (the clocks of the machines that resume and that started the sweep may differ).
CLOCK_SLACK_MS = 10 * 60 * 1000


class TrialLike(Protocol):
    """What an outcome reads of a trial: a live ``optuna.Trial`` or a ``FrozenTrial``."""

    @property
    def number(self) -> int:
        """The trial's number in its study."""
        ...

    @property
    def params(self) -> dict[str, Any]:
        """Its parameter values."""
        ...

    @property
    def user_attrs(self) -> dict[str, Any]:
        """Its user attributes (``attempt``, ``crashes``, ``execution_id``...)."""
        ...


@dataclass(frozen=True)
class Outcome:
    """How one trial ends in the study: the state Optuna is told and what the sweep keeps.

    ``status`` is the trial's outcome (complete, error, pruned, crashed, stopped,
    interrupted); ``reason`` a failure's line and ``kind`` its class (oom, time_limit,
    user_error, infrastructure), kept in the trial so ``sweep status`` groups them without
    the logs; ``rerun`` the user attributes of the trial enqueued to run the same
    parameters again (a retry, an interrupted trial).
    """

    state: TrialState
    status: Status
    values: tuple[float, ...] | None = None
    reason: str | None = None
    kind: str | None = None
    rerun: Mapping[str, Any] | None = None

    @property
    def infeasible(self) -> bool:
        """A failure the trial's resources caused, told as a pruned, infeasible trial."""
        return self.state is TrialState.PRUNED and self.status is Status.ERROR


def result_outcome(
    record: ExecutionRecord,
    trial: TrialLike,
    *,
    metrics: Sequence[str],
    max_retries: int,
    log_text: Callable[[], str],
) -> Outcome:
    """What a trial's execution record means (see the table of the module).

    ``log_text`` gives the end of the execution's log, asked only for a failure.
    """
    status = record.status
    if status is Status.PRUNED:
        return Outcome(TrialState.PRUNED, Status.PRUNED)
    values = record.objective_values(metrics) if status is Status.COMPLETE else None
    if values is not None:
        return Outcome(TrialState.COMPLETE, Status.COMPLETE, values=tuple(values))
    log = log_text()
    if status is Status.COMPLETE:  # and a metric is missing
        missing = [m for m in metrics if not isinstance(record.metrics.get(m), (int, float))]
        what = ", ".join(missing) or metrics[0]
        why = f"the step never printed the metric {what} as a finite number"
        reason, kind = _why(record, log, why)
        return Outcome(TrialState.FAIL, Status.ERROR, reason=reason, kind=kind)
    reason, kind = _why(record, log)
    if status is Status.STOPPED:
        return Outcome(TrialState.FAIL, Status.STOPPED, reason=reason)
    if kind == INFRASTRUCTURE:
        # a retry is a new trial: the crashes so far travel with it in its user attrs
        crashes = int(trial.user_attrs.get("crashes", 0))
        if crashes < max_retries:
            rerun = _rerun(trial, attempt=_attempt(trial) + 1, crashes=crashes + 1)
            return Outcome(TrialState.FAIL, Status.CRASHED, reason=reason, rerun=rerun)
        what = "crashed" if status is Status.CRASHED else "failed"
        reason, kind = _why(record, log, f"{what} {crashes + 1} times: {record.error}")
        return Outcome(TrialState.FAIL, Status.ERROR, reason=reason, kind=kind)
    if status is not Status.ERROR:
        return Outcome(TrialState.FAIL, status, reason=reason)  # an end it did not expect
    # oom and time_limit are told as infeasible, so that TPE avoids their region
    state = TrialState.PRUNED if kind in RESOURCE_CLASSES else TrialState.FAIL
    return Outcome(state, Status.ERROR, reason=reason, kind=kind)


def resumed_outcome(
    record: ExecutionRecord | None,
    trial: TrialLike,
    *,
    metrics: Sequence[str],
    max_retries: int,
    log_text: Callable[[], str],
) -> Outcome:
    """What a trial a killed driver left running means, its record settled (None: never written).

    A finished record means what it would have meant to the driver (:func:`result_outcome`).
    One that never finished, or that the driver stopped as it went away, was interrupted:
    the trial runs again with the same parameters, as the same attempt when it never started.
    """
    if record is not None and record.is_final and record.status is not Status.STOPPED:
        return result_outcome(
            record, trial, metrics=metrics, max_retries=max_retries, log_text=log_text
        )
    started = bool(trial.user_attrs.get("execution_id"))  # one asked ahead never ran
    rerun = _rerun(
        trial, attempt=_attempt(trial) + started, crashes=int(trial.user_attrs.get("crashes", 0))
    )
    return Outcome(TrialState.FAIL, Status.INTERRUPTED, rerun=rerun)


def tell(study: optuna.Study, trial: optuna.Trial, outcome: Outcome) -> None:
    """Tell Optuna how ``trial`` ended, keep why in its user attributes, enqueue its re-run.

    The attributes and the tell go to a database study in one transaction.
    """
    with grouped_writes(study):
        _tell(study, trial, outcome)
    if outcome.rerun is not None:
        study.enqueue_trial(trial.params, user_attrs=dict(outcome.rerun))


def _tell(study: optuna.Study, trial: optuna.Trial, outcome: Outcome) -> None:
    if outcome.status != DEFAULT_OUTCOMES.get(outcome.state):
        trial.set_user_attr("outcome", outcome.status)
    if outcome.reason is not None:
        trial.set_user_attr("reason", outcome.reason)
    if outcome.kind is not None:
        trial.set_user_attr(CLASS_ATTR, outcome.kind)
    if outcome.infeasible:
        # TPE ignores failed trials but ranks infeasible ones (a positive constraint, kept
        # in the trial's system attrs) among the bad; a pruned trial carries no made-up value
        trial.set_constraint(CONSTRAINT, 1.0)
    if outcome.state is TrialState.COMPLETE:
        study.tell(trial, list(outcome.values or [UNRANKED_VALUE]))
    else:
        study.tell(trial, state=outcome.state)


def _why(record: ExecutionRecord, log_text: str, reason: str | None = None) -> tuple[str, str]:
    """A failure's line (``reason`` first, when the sweep knows more) and its class."""
    kind = failure_class(record, log_text)
    return failure_reason(record, reason=reason, log_text=log_text), str(kind)


def _attempt(trial: TrialLike) -> int:
    return int(trial.user_attrs.get("attempt", 1))


def _rerun(trial: TrialLike, *, attempt: int, crashes: int) -> dict[str, Any]:
    return {"retry_of": trial.number, "attempt": attempt, "crashes": crashes}


# -- resume from an object store's copy ------------------------------------------------------


def adopt_executions(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    store: RecordStore,
    distributions: Mapping[str, BaseDistribution],
    created_at: str | None,
) -> int:
    """Add the sweep's executions the study does not know as running trials; how many.

    A copy of the study (:mod:`sweeper.sweep.study`) can be behind the records, which are
    the truth: each execution it does not know becomes a running trial with its execution
    id, under the trial number its record carries, and is then settled like any running
    trial. Trial numbers never asked in the copy and never recorded are filled with
    ``interrupted`` trials, which do not count. So a resumed sweep still ends at exactly
    ``--trials`` trials, none run twice. Safe on a study that knows every execution.
    """
    found = _unknown_executions(study, store, created_at)
    study_id = storage.get_study_id_from_name(study.study_name)
    adopted = 0
    for number in sorted(found):
        record = found[number]
        attrs = {"execution_id": record.id, "attempt": int(record.attempt or 1)}
        trials = study.get_trials(deepcopy=False)
        if number < len(trials):
            existing = trials[number]
            if existing.state != TrialState.WAITING and (
                existing.state != TrialState.RUNNING or existing.user_attrs.get("execution_id")
            ):
                continue
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
            if existing.state == TrialState.WAITING:
                # an enqueued trial (a retry) that the killed driver had asked
                storage.set_trial_state_values(trial_id, state=TrialState.RUNNING)
            for key, value in attrs.items():
                storage.set_trial_user_attr(trial_id, key, value)
            adopted += 1
            continue
        for _ in range(len(trials), number):  # asked, never recorded: not counted
            study.add_trial(
                create_trial(state=TrialState.FAIL, user_attrs={"outcome": Status.INTERRUPTED})
            )
        params, used = _trial_params(record.parameters, distributions)
        study.add_trial(
            create_trial(
                state=TrialState.RUNNING, params=params, distributions=used, user_attrs=attrs
            )
        )
        adopted += 1
    return adopted


def _unknown_executions(
    study: optuna.Study, store: RecordStore, created_at: str | None
) -> dict[int, ExecutionRecord]:
    """The latest execution of each trial number of the sweep that the study does not know."""
    known = {t.user_attrs.get("execution_id") for t in study.get_trials(deepcopy=False)}
    since = new_execution_id(now_ms=max(0, _created_ms(created_at) - CLOCK_SLACK_MS))[:10]
    found: dict[int, ExecutionRecord] = {}
    for execution_id in store.execution_ids(since=since):
        if execution_id in known:
            continue
        try:
            record = store.get_record(execution_id)
        except (StoreError, ValueError):
            continue
        if record is None or record.sweep_id != study.study_name or record.trial_number is None:
            continue
        number = int(record.trial_number)
        if number not in found or record.id > found[number].id:
            found[number] = record  # the latest attempt of the number
    return found


def _created_ms(created_at: str | None) -> int:
    try:
        return int(datetime.fromisoformat(str(created_at)).timestamp() * 1000)
    except ValueError:
        return 0


def _trial_params(
    parameters: Mapping[str, Any], distributions: Mapping[str, BaseDistribution]
) -> tuple[dict[str, Any], dict[str, BaseDistribution]]:
    """The record's values of the searched parameters that their distributions admit."""
    params: dict[str, Any] = {}
    used: dict[str, BaseDistribution] = {}
    for name, dist in distributions.items():
        if name not in parameters:
            continue
        if admits(dist, parameters[name]):
            params[name] = parameters[name]
            used[name] = dist
    return params, used
