"""Trials a killed driver left RUNNING in the study, settled when the sweep resumes.

Each had an execution (its id in the trial's user attributes) or had only been asked.
``recovery.settle`` first makes its record and rows whole (rows a killed writer never wrote
are written, a container it left is removed); then a finished record means what it would have
meant to the killed driver, and any other trial runs again with the same parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from functools import partial

import optuna
from optuna.trial import TrialState

from sweeper.cluster import recovery
from sweeper.record import ExecutionRecord
from sweeper.status import Status
from sweeper.store import RecordStore
from sweeper.sweep.outcomes import Outcome, resumed_outcome
from sweeper.sweep.plan import SweepPlan
from sweeper.sweep.reproducible import InOrder

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
    study: optuna.Study, store: RecordStore, order: InOrder, asked_with: Collection[str]
) -> list[optuna.Trial]:
    """Reproducible: the trials left running, in the order they were asked, added to ``order``.

    Those that ended are held for their turn; the others are returned to run again as the
    same trial (its parameters, the next attempt), so the sweep goes on as if its driver had
    not been killed: nothing is told out of turn, nothing asked that would not have been.
    A trial without all of ``asked_with`` (the driver was killed inside its ask: a database
    storage writes each parameter apart) never ran: it ends interrupted, which does not count.
    """
    rerun = []
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        trial = optuna.Trial(study, frozen._trial_id)
        execution_id = frozen.user_attrs.get("execution_id")
        if execution_id is None and not set(asked_with) <= set(frozen.params):
            trial.set_user_attr("outcome", Status.INTERRUPTED)
            study.tell(trial, state=TrialState.FAIL)
            continue
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
