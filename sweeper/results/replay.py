"""Pruner replay: what a pruner would have done to a finished sweep, without running anything.

The recorded metric curves of a sweep are fed, in their recorded order, to the same Optuna
pruner the live sweep builds (:func:`sweeper.sweep.samplers.make_pruner`) on an in-memory
study. The timeline is rebuilt from the store: a trial is asked when its execution started,
each JSON line that carried the sweep's first metric is one ``report(value, step)`` (step =
the number of such lines before it, as the live sweep counts), and a trial is told when its
execution ended. Concurrent trials interleave by timestamp, so the median rule sees exactly
the trials that had finished at that moment. ``should_prune()`` is asked after every report;
the live sweep asks after each poll of its running trials (a few reports at most), so a
replay may stop a trial a report or two earlier than a live sweep would have.

Example::

    import sweeper.results
    replay = sweeper.results.open(".sweeper").replay("01J...", pruner="median")
    replay.saved_percent, replay.best_survived, replay.rank_correlation
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

import optuna
import pandas as pd
from optuna.trial import TrialState

from sweeper.errors import SweeperError
from sweeper.status import Status
from sweeper.store._schema import METRIC_PREFIX
from sweeper.sweep.samplers import make_pruner

if TYPE_CHECKING:
    from sweeper.store import RecordStore


class RecordedSweeps(Protocol):
    """What a replay reads of a store: :class:`sweeper.results.Results` provides it."""

    @property
    def store(self) -> RecordStore: ...

    def sweep(self, sweep_id: str) -> dict[str, Any] | None: ...

    def executions(
        self, sweep_id: str | None = None, step: str | None = None, status: str | None = None
    ) -> pd.DataFrame: ...

    def metrics(self, execution_id: str | None = None) -> pd.DataFrame: ...

    def best(
        self, sweep_id: str, k: int = 10, metric: str | None = None, direction: str | None = None
    ) -> pd.DataFrame: ...


#: The pruners a replay can apply (``none`` never stops anything, so there is nothing to show).
REPLAY_PRUNERS = ("median", "asha", "hyperband")

#: How the time at a prune point is estimated (also in every result, so a reader knows).
TIME_ESTIMATE = (
    "time at the prune point = the timestamp of the metric line that triggered the prune, "
    "relative to the execution's start; linear in the step number over the execution's "
    "duration when that timestamp is missing or outside the execution"
)

#: Executions whose curves are replayed; failed, stopped and crashed ones have no result to rank.
_REPLAYED_STATUSES = (Status.COMPLETE, Status.PRUNED)

# The order of timeline items with equal timestamps: finish, then start, then reports.
_FINISH, _START, _REPORT = 0, 1, 2


@dataclass(frozen=True)
class ReplayTrial:
    """One execution of the sweep under the replayed pruner."""

    execution_id: str
    trial_number: int | None
    """The trial number of the recorded sweep."""
    replay_number: int
    """The trial number in the replay (executions numbered in the order they started)."""
    recorded_status: str
    curve: tuple[float, ...]
    """The recorded intermediate values of the metric, step 0 first."""
    pruned_at_step: int | None
    """The step after whose report the pruner stopped the trial; None if it survived."""
    value: float | None
    """The value the replay ranks it by: the last value seen before the prune, else the final one."""
    recorded_value: float | None
    """The value the recorded sweep ranks it by (the last value the step printed)."""
    duration_s: float
    used_s: float
    """Execution-seconds it would have used (all of ``duration_s`` if it survived)."""

    @property
    def pruned(self) -> bool:
        """Whether the replayed pruner stopped it."""
        return self.pruned_at_step is not None

    @property
    def saved_s(self) -> float:
        """Execution-seconds the prune would have saved."""
        return self.duration_s - self.used_s


@dataclass(frozen=True)
class Replay:
    """What ``pruner`` would have done to sweep ``sweep_id`` (``results.replay``)."""

    sweep_id: str
    pruner: str
    metric: str
    direction: str
    trials: tuple[ReplayTrial, ...]
    """Replayed executions in the order they started."""
    skipped: int
    """Executions of the sweep not replayed (failed, stopped, or without a metric line)."""
    best_execution_id: str | None
    """The recorded sweep's best complete execution."""
    best_survived: bool | None
    rank_correlation: float | None
    """Spearman's rho between the replay's and the recorded values (None below 2 trials)."""
    time_estimate: str = TIME_ESTIMATE

    @property
    def pruned(self) -> tuple[ReplayTrial, ...]:
        """The trials the pruner would have stopped."""
        return tuple(t for t in self.trials if t.pruned)

    @property
    def total_s(self) -> float:
        """Execution-seconds the replayed executions used for real."""
        return sum(t.duration_s for t in self.trials)

    @property
    def saved_s(self) -> float:
        """Execution-seconds the pruner would have saved."""
        return sum(t.saved_s for t in self.trials)

    @property
    def saved_percent(self) -> float:
        """``saved_s`` as a percentage of ``total_s``."""
        return 100.0 * self.saved_s / self.total_s if self.total_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (``sweep replay --json``)."""
        data = asdict(self)
        data["trials"] = list(data["trials"])  # the same value as its JSON read back
        for trial, row in zip(self.trials, data["trials"], strict=True):
            row["pruned"] = trial.pruned
            row["saved_s"] = trial.saved_s
            row["curve"] = list(trial.curve)
        data.update(
            pruned=len(self.pruned),
            total_s=self.total_s,
            saved_s=self.saved_s,
            saved_percent=self.saved_percent,
            rank_method="spearman",
        )
        return data


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or value is None or value is pd.NA:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _seconds(later: Any, earlier: Any) -> float | None:
    if later is None or earlier is None or pd.isna(later) or pd.isna(earlier):
        return None
    return float((later - earlier).total_seconds())


@dataclass
class _Run:
    """One execution being replayed (mutable while the timeline is played)."""

    row: dict[str, Any]
    events: pd.DataFrame
    number: int
    trial: optuna.Trial | None = None
    pruned_at: int | None = None
    used_s: float | None = None

    @property
    def duration_s(self) -> float:
        duration = _finite(self.row.get("duration_s"))
        if duration is None:
            duration = _seconds(self.row.get("ended_at"), self.row.get("started_at")) or 0.0
        return max(duration, 0.0)

    def elapsed_at(self, step: int) -> float:
        """Seconds from the start to the report of ``step`` (see :data:`TIME_ESTIMATE`)."""
        duration = self.duration_s
        elapsed = _seconds(self.events["time"].iloc[step], self.row.get("started_at"))
        if elapsed is None or not 0.0 <= elapsed <= duration:
            elapsed = duration * (step + 1) / len(self.events)
        return elapsed


def _runs(results: RecordedSweeps, sweep_id: str, metric: str) -> tuple[list[_Run], int]:
    executions = results.executions(sweep_id=sweep_id)
    replayed = executions[executions["status"].isin(_REPLAYED_STATUSES)]
    events = results.metrics()
    events = events[
        (events["key"] == metric) & events["execution_id"].isin(replayed["execution_id"])
    ]
    events = events[events["value"].map(_finite).notna()]
    by_execution = {key: frame.sort_values("seq") for key, frame in events.groupby("execution_id")}
    started = replayed.assign(
        _start=replayed["started_at"].fillna(replayed["created_at"])
    ).sort_values(["_start", "counter"], kind="stable")
    runs: list[_Run] = []
    for row in started.to_dict(orient="records"):
        curve = by_execution.get(row["execution_id"])
        if curve is not None and not curve.empty:
            runs.append(_Run(row=row, events=curve.reset_index(drop=True), number=len(runs)))
    return runs, len(executions) - len(runs)


def _timeline(runs: list[_Run]) -> list[tuple[Any, int, int, int]]:
    """(time, kind, replay number, step) items in the order they happened."""
    items = []
    for run in runs:
        start = run.row["_start"]
        items.append((start, _START, run.number, 0))
        last = start
        for step, time in enumerate(run.events["time"]):
            # a line read before the recorded start (clock skew) still follows the start
            when = time if not pd.isna(time) and time >= last else last
            items.append((when, _REPORT, run.number, step))
            last = when
        end = run.row.get("ended_at")
        items.append((end if not pd.isna(end) and end >= last else last, _FINISH, run.number, 0))
    return sorted(items)


def replay_sweep(results: RecordedSweeps, sweep_id: str, pruner: str) -> Replay:
    """Replay the recorded curves of sweep ``sweep_id`` under ``pruner``; see the module doc."""
    name = pruner.lower()
    if name not in REPLAY_PRUNERS:
        raise SweeperError(
            f'cannot replay pruner "{pruner}"; choose one of {", ".join(REPLAY_PRUNERS)}'
        )
    metric, direction, objectives = _objective(results, sweep_id)
    study = optuna.create_study(
        # Hyperband assigns brackets from a hash of the study name and trial number: both fixed.
        study_name=f"replay-{sweep_id}",
        direction=direction,  # type: ignore[arg-type]
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=make_pruner(name, objectives=objectives),
    )
    runs, skipped = _runs(results, sweep_id, metric)
    if not runs:
        raise SweeperError(
            f'sweep {sweep_id} has no intermediate "{metric}" metric events to replay: its step '
            f"must print a JSON line with {metric} during training (e.g. one per epoch)"
        )
    _play(study, runs)
    trials = tuple(_trial(run) for run in runs)
    best = (
        results.best(sweep_id, k=1)
        if any(r.row["status"] == Status.COMPLETE for r in runs)
        else None
    )
    best_id = str(best.iloc[0]["execution_id"]) if best is not None and not best.empty else None
    survived = next((not t.pruned for t in trials if t.execution_id == best_id), None)
    return Replay(
        sweep_id=sweep_id,
        pruner=name,
        metric=metric,
        direction=direction,
        trials=trials,
        skipped=skipped,
        best_execution_id=best_id,
        best_survived=survived,
        rank_correlation=_spearman(trials),
    )


def _objective(results: RecordedSweeps, sweep_id: str) -> tuple[str, str, int]:
    """The sweep's first metric and its direction, and how many objectives it has."""
    sweep = results.sweep(sweep_id)
    if sweep is None:
        raise SweeperError(f'unknown sweep "{sweep_id}" in the store {results.store.location}')
    metrics = list(sweep.get("metrics") or [])
    directions = list(sweep.get("directions") or [])
    if not metrics or len(directions) != len(metrics):
        raise SweeperError(f"sweep {sweep_id} has no recorded objective metric to replay")
    metric, direction = str(metrics[0]), str(directions[0])
    if direction not in ("minimize", "maximize"):
        raise SweeperError(f'sweep {sweep_id} has an unknown direction "{direction}"')
    return metric, direction, len(metrics)


def _play(study: optuna.Study, runs: list[_Run]) -> None:
    """Ask, report and tell ``study`` in the order the recorded runs did, pruning as it says."""
    for _when, kind, number, step in _timeline(runs):
        run = runs[number]
        if kind == _START:
            run.trial = study.ask()
            continue
        assert run.trial is not None
        if run.pruned_at is not None:
            continue  # stopped by the replay: its later lines never happened
        if kind == _REPORT:
            run.trial.report(float(run.events["value"].iloc[step]), step)
            if run.trial.should_prune():
                run.pruned_at = step
                run.used_s = run.elapsed_at(step)
                study.tell(run.trial, state=TrialState.PRUNED)
        elif run.row["status"] == Status.COMPLETE:
            study.tell(run.trial, float(run.events["value"].iloc[-1]))
        else:
            study.tell(run.trial, state=TrialState.PRUNED)


def _trial(run: _Run) -> ReplayTrial:
    curve = tuple(float(v) for v in run.events["value"])
    recorded = _finite(run.row.get(METRIC_PREFIX + str(run.events["key"].iloc[0])))
    last = curve[run.pruned_at] if run.pruned_at is not None else curve[-1]
    trial_number = run.row.get("trial_number")
    return ReplayTrial(
        execution_id=str(run.row["execution_id"]),
        trial_number=None if trial_number is None or pd.isna(trial_number) else int(trial_number),
        replay_number=run.number,
        recorded_status=str(run.row["status"]),
        curve=curve,
        pruned_at_step=run.pruned_at,
        value=last,
        recorded_value=recorded if recorded is not None else curve[-1],
        duration_s=run.duration_s,
        used_s=run.used_s if run.used_s is not None else run.duration_s,
    )


def _spearman(trials: tuple[ReplayTrial, ...]) -> float | None:
    frame = pd.DataFrame(
        {"replay": [t.value for t in trials], "recorded": [t.recorded_value for t in trials]}
    ).dropna()
    if len(frame) < 2 or frame["replay"].nunique() < 2 or frame["recorded"].nunique() < 2:
        return None  # a rank correlation needs two different values on each side
    rho = frame["replay"].corr(frame["recorded"], method="spearman")
    return None if pd.isna(rho) else float(rho)
