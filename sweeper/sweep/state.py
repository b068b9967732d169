"""A sweep's durable state and what its study says: ``sweep.json``, counts, best, a result.

``sweeps/<sweep_id>/sweep.json`` keeps what the sweep was started with (:class:`SweepState`);
the study (:mod:`sweeper.sweep.study`) keeps its trials. :func:`sweep_result` reads a study
into a :class:`~sweeper.sweep.result.SweepResult`, for the end of a sweep and for ``sweep
status`` alike.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import optuna
from optuna.trial import TrialState

from sweeper.status import Status
from sweeper.store import RecordStore
from sweeper.sweep.failures import class_counts, study_failures
from sweeper.sweep.result import ResourceTotals, SweepResult, TrialSummary, WarmStart

#: Outcomes that count towards a sweep's ``--trials``.
COUNTED_OUTCOMES = (Status.COMPLETE, Status.ERROR, Status.PRUNED)


#: The outcome (user attribute) of a trial a warm start added: history, not one of the
#: sweep's own trials (see :mod:`sweeper.sweep.history`).
WARM_START = "warm_start"


def is_own_trial(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a trial is one of the sweep's own (not added by a warm start)."""
    return trial.user_attrs.get("outcome") != WARM_START


#: The outcome a finished trial has when none was recorded (only failures record theirs,
#: which saves a journal write, with its fsync, for every complete or pruned trial).
DEFAULT_OUTCOMES = {
    TrialState.COMPLETE: Status.COMPLETE,
    TrialState.PRUNED: Status.PRUNED,
    TrialState.FAIL: Status.ERROR,
}


def outcome_counts(study: optuna.Study) -> dict[str, int]:
    """How many trials ended each way (complete, error, pruned, interrupted) or are running."""
    counts: Counter[str] = Counter()
    for trial in study.get_trials(deepcopy=False):
        if trial.state == TrialState.RUNNING and "execution_id" in trial.user_attrs:
            counts["running"] += 1
        elif trial.state in (TrialState.WAITING, TrialState.RUNNING):  # asked, not started yet
            counts["waiting"] += 1
        else:
            default = DEFAULT_OUTCOMES.get(trial.state, trial.state.name.lower())
            counts[str(trial.user_attrs.get("outcome", default))] += 1
    return dict(counts)


def own_best(
    study: optuna.Study, directions: Sequence[str]
) -> optuna.trial.FrozenTrial | list[optuna.trial.FrozenTrial] | None:
    """The best of the sweep's own trials (one objective), or its Pareto front (several).

    Trials a warm start added are left out: they are history, not the sweep's result. A
    Pareto front keeps the sweep's trials on the front of all of them.
    """
    if len(directions) > 1:
        try:
            return [t for t in study.best_trials if is_own_trial(t)]
        except ValueError:
            return []
    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None and is_own_trial(t)
    ]
    if not complete:
        return None
    pick = max if directions and directions[0] == "maximize" else min
    return pick(complete, key=lambda t: float(t.value or 0.0))


def trial_summary(trial: optuna.trial.FrozenTrial, metrics: Sequence[str]) -> TrialSummary:
    """A finished trial as a result holds it: execution, objective value(s), parameters."""
    values = trial.values or []
    return TrialSummary(
        execution_id=trial.user_attrs.get("execution_id"),
        trial_number=trial.number,
        value=values[0] if len(values) == 1 else None,
        values=dict(zip(metrics, values, strict=False)),
        parameters=dict(trial.params),
    )


def complete_trials(study: optuna.Study, metrics: Sequence[str]) -> tuple[TrialSummary, ...]:
    """The sweep's own complete trials, in trial order (a warm start's are history)."""
    return tuple(
        trial_summary(t, metrics)
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.values and is_own_trial(t)
    )


def sweep_result(
    study: optuna.Study,
    sweep_id: str,
    metrics: Sequence[str],
    directions: Sequence[str] | None = None,
    *,
    status: Status,
    failure: str | None = None,
    warm_start: WarmStart | None = None,
    complete: tuple[TrialSummary, ...] = (),
    trials_asked: int | None = None,
    resources: ResourceTotals | None = None,
) -> SweepResult:
    """Counts, best trial(s) and failure reasons of a study, as a :class:`SweepResult`.

    ``directions`` default to the study's (they are the same unless the sweep is unranked);
    the other fields are the result's (see :class:`SweepResult`).
    """
    counts = outcome_counts(study)
    directions = list(directions or [d.name.lower() for d in study.directions])
    best: TrialSummary | tuple[TrialSummary, ...] | None = None
    found = own_best(study, directions) if metrics else None
    if isinstance(found, list):
        best = tuple(trial_summary(t, metrics) for t in found)
    elif found is not None:
        best = trial_summary(found, metrics)
    elif len(metrics) > 1:
        best = ()
    groups = study_failures(study)
    return SweepResult(
        sweep_id=sweep_id,
        status=status,
        counts={key: counts.get(key, 0) for key in ("complete", "error", "pruned", "running")},
        best=best,
        failures=tuple(groups),
        failure_classes=class_counts(groups),
        reused=sum(1 for t in study.get_trials(deepcopy=False) if t.user_attrs.get("reused_from")),
        failure=failure,
        warm_start=warm_start,
        complete=complete,
        trials_asked=trials_asked,
        resources=resources or ResourceTotals(),
    )


def sweep_resources(store: RecordStore, sweep_id: str) -> ResourceTotals:
    """What the sweep's executions used together, from their executions rows (every attempt
    counts: a failed one used what it used)."""
    columns = ["execution_id", "sweep_id", "cpu_s", "gpu_s", "peak_memory_mb"]
    last: dict[str, dict[str, Any]] = {}
    for row in store.read_dataset("executions", columns=columns).to_pylist():
        if row["sweep_id"] == sweep_id:
            last[row["execution_id"]] = row  # an id's last row is its final one
    return ResourceTotals.of(last.values())


class SweepState:
    """Reads and writes a sweep's saved state (``sweep.json``, through the store)."""

    def __init__(self, store: RecordStore, sweep_id: str) -> None:
        self.store = store
        self.sweep_id = sweep_id
        existing = store.get_sweep(sweep_id)
        self.data: dict[str, Any] = existing or {}
        self.created_at: str = self.data.get("created_at") or datetime.now(timezone.utc).isoformat()

    def create(
        self, options: dict[str, Any], code_version: str, code_archive: str | None, space_json: str
    ) -> None:
        """Record a new sweep before its first trial starts."""
        self.data = {
            "sweep_id": self.sweep_id,
            "options": options,
            "code_version": code_version,
            "code_archive": code_archive,
            "search_space": space_json,
            "status": Status.RUNNING,
            "created_at": self.created_at,
        }
        self.store.put_sweep(self.sweep_id, self.data)

    def update(self, **changes: Any) -> None:
        """Change fields of the saved state (e.g. the status at the end)."""
        self.data.update(changes, updated_at=datetime.now(timezone.utc).isoformat())
        self.store.put_sweep(self.sweep_id, self.data)
