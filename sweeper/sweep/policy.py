"""A sweep's decisions, as a :class:`~sweeper.cluster.controller.Policy`: what Optuna asks next
and what each trial's end means; the :class:`~sweeper.cluster.controller.Controller` runs them.

The policy gets a frozen :class:`~sweeper.sweep.plan.SweepPlan`, the store and what opens the
study, and owns the rest: the counts, the best value, the failures by class, the trials
asked ahead. What a record means to the study is :mod:`sweeper.sweep.outcomes`'s business.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import optuna
from optuna.trial import TrialState

from sweeper.cluster import recovery
from sweeper.cluster.actors import ResourceShape
from sweeper.cluster.connect import ClusterInfo
from sweeper.cluster.controller import ControllerView, Launch, Policy
from sweeper.errors import SweeperError
from sweeper.execution.runner import ExecutionContext
from sweeper.record import ExecutionRecord, MetricEvent
from sweeper.status import Status
from sweeper.store import RecordStore
from sweeper.sweep.failures import CLASS_ATTR, RESOURCE_CLASSES, read_log_tail
from sweeper.sweep.history import REUSED_ATTR, TrialCache, trial_distributions, warm_start
from sweeper.sweep.outcomes import Outcome, result_outcome, resumed_outcome, tell
from sweeper.sweep.plan import SweepPlan
from sweeper.sweep.result import SweepResult, TrialSummary, WarmStart
from sweeper.sweep.state import (
    COUNTED_OUTCOMES,
    SweepState,
    complete_trials,
    outcome_counts,
    own_best,
    sweep_result,
)


@dataclass(frozen=True)
class Progress:
    """A snapshot of a sweep for progress bars and ``sweep status``."""

    sweep_id: str
    total: int
    counts: dict[str, int]
    best_value: Any
    started: float

    @property
    def done(self) -> int:
        """Trials that count towards the total."""
        return sum(self.counts.get(k, 0) for k in COUNTED_OUTCOMES)


@dataclass
class Tally:
    """What a sweep counts as its trials end: outcomes, failures by class, the best value.

    Read from the study once when the sweep starts (:meth:`of`), then kept up to date trial
    by trial (:meth:`add`) rather than re-read from the study on every turn (O(trials)).
    ``best`` is the best value (one metric) or the size of the Pareto front (several).
    """

    directions: tuple[str, ...]
    counts: dict[str, int] = field(default_factory=dict)
    #: Failed trials by class (oom, time_limit, ...), for ``--max-failures``.
    failure_classes: Counter[str] = field(default_factory=Counter)
    best: Any = None

    @classmethod
    def of(cls, study: optuna.Study, directions: tuple[str, ...]) -> Tally:
        """The tally of the trials a study holds (running ones left out)."""
        counts = {k: v for k, v in outcome_counts(study).items() if k != Status.RUNNING}
        classes = Counter(
            str(t.user_attrs[CLASS_ATTR])
            for t in study.get_trials(deepcopy=False)
            if t.user_attrs.get("outcome") == Status.ERROR and CLASS_ATTR in t.user_attrs
        )
        found = own_best(study, directions) if directions else None
        best: Any = found.value if isinstance(found, optuna.trial.FrozenTrial) else None
        if isinstance(found, list):
            best = len(found)  # the Pareto front's size
        return cls(directions, counts, classes, best)

    @property
    def done(self) -> int:
        """Trials that count towards ``--trials``."""
        return sum(self.counts.get(k, 0) for k in Status.counted())

    def counted_failures(self) -> int:
        """Failed trials that count towards ``--max-failures``: not those the resources caused."""
        steered = sum(self.failure_classes[kind] for kind in RESOURCE_CLASSES)
        return self.counts.get(Status.ERROR, 0) - steered

    def add(self, outcome: Outcome) -> None:
        """Count a trial that ended; keep the best value."""
        self.counts[outcome.status] = self.counts.get(outcome.status, 0) + 1
        if outcome.kind is not None:
            self.failure_classes[outcome.kind] += 1
        values = outcome.values
        if values is not None and len(values) == 1:
            minimize = self.directions[0] == "minimize"
            if self.best is None or (values[0] < self.best if minimize else values[0] > self.best):
                self.best = values[0]
        elif values:
            self.best = self.counts.get(Status.COMPLETE, 0)


class SweepPolicy(Policy):
    """Optuna asks, each trial runs as one execution, its end is told back to Optuna.

    Also what a sweep keeps on the side: counts and the best value for progress, crashed
    trials retried as new ones, ``--max-failures``, the task's stop condition, trials a
    killed driver left running (settled on resume), ``sweep.json`` and the ``sweeps`` row.
    ``open_study`` opens the sweep's study (once, when the sweep starts); :attr:`result`
    is how it ended, once it has.
    """

    def __init__(
        self,
        plan: SweepPlan,
        store: RecordStore,
        open_study: Callable[[], optuna.Study],
        *,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> None:
        self.plan = plan
        self.store = store
        self.open_study = open_study
        self.on_progress = on_progress
        self.poll_metrics = plan.pruner != "none"
        self.probe = plan.template.build({})
        self.shape = ResourceShape.of(self.probe)
        self.state = SweepState(store, plan.sweep_id)
        self.tally = Tally(plan.directions)
        self.started = time.monotonic()
        self.warm_start: WarmStart | None = None
        self.cache = TrialCache(store, plan.template.runtime) if plan.reuse else None
        self.result: SweepResult | None = None
        self._tail: tuple[str | None, str] = (None, "")
        self._study: optuna.Study | None = None
        self._view: ControllerView | None = None
        #: Metric values reported to Optuna so far, per trial in flight (its next step).
        self._steps: dict[Hashable, int] = {}
        #: Actors hold their executions' rows this long before writing them (0: at once).
        self.batch_rows_s = rows_flush_s()
        self._slots: int | None = None
        # pre-ask: the next trial, asked while every slot is busy, so a freed slot never
        # waits for the sampler; and when each freed slot became free (for slot idle time)
        self._ready: list[Launch] = []
        self._freed: list[float] = []
        self._refilled = 0  # slots refilled by asked_ahead whose results are still to be told
        self.slot_idle_s = 0.0

    @property
    def study(self) -> optuna.Study:
        """The sweep's Optuna study (opened by :meth:`start`)."""
        if self._study is None:
            raise RuntimeError("the sweep has not started")
        return self._study

    # -- Policy --------------------------------------------------------------------------

    def shapes(self) -> Sequence[ResourceShape]:
        """Every trial reserves the same resources."""
        return [self.shape]

    def slots(self, cluster: ClusterInfo) -> int | None:
        """``--parallel``, else as many trials as fit on the largest node; at most ``--trials``.

        The controller starts this many actors before the first trial (none left idle).
        """
        cpus = self.shape.cpus
        slots = self.plan.parallel or max(
            1, int(cluster.largest("CPU") // max(cpus, 1e-9)) if cpus else 1
        )
        self._slots = min(slots, self.plan.trials)
        return self._slots

    def start(self, view: ControllerView) -> None:
        """Save a new sweep (or load a resumed one), then settle what a killed driver left."""
        plan = self.plan
        self._view = view
        if not plan.resume:
            template = plan.template
            self.state.create(
                plan.saved_options(self.probe.secret_names),
                template.code_version,
                template.code_archive,
                plan.space.to_json(),
            )
        study = self._study = self.open_study()
        if not plan.resume:
            if plan.warm_sources:
                self.warm_start = warm_start(
                    study, self.store, plan.warm_sources, plan.space, plan.metrics
                )
                self.state.update(warm_start=self.warm_start.to_dict())
            for params in plan.space.parameter_sets:
                study.enqueue_trial(params)
        self.store.write_rows(
            "sweeps", [plan.row(Status.RUNNING, created_at=self.state.created_at)]
        )
        self._recover()
        if plan.resume:  # rows a killed actor held are rebuilt from the records
            recovery.restore_rows(self.store, finished_ids(self.study))
        self.tally = Tally.of(study, plan.directions)
        self.started = time.monotonic()
        self._check_failures(view)

    def ask(self, view: ControllerView, free: int) -> list[Launch]:
        """Trials up to ``free`` (the one asked ahead first), never beyond ``--trials``.

        A trial the store answers (``--reuse``) takes no slot: another is asked in its place.
        """
        launches = self._take_ready(free)
        # those taken are not in flight yet, hence the len(launches) in the room
        while len(launches) < free and not view.stopping and self._room(view) - len(launches) > 0:
            launch = self._launch(view)
            if launch is not None:
                launches.append(launch)
        now = time.monotonic()
        for _ in launches:
            if self._freed:
                self.slot_idle_s += now - self._freed.pop(0)
        return launches

    def asked_ahead(self, view: ControllerView, free: int) -> list[Launch]:
        """The trials asked ahead, to start in slots freed by results not yet told.

        Those results could not change them (they were asked before), so the slot does
        not wait for the tell. Not when a result may end the sweep (a stop condition,
        ``--max-failures``): there a trial asked ahead must not start after the last one.
        """
        if self.plan.stop_condition is not None or self.plan.max_failures is not None:
            return []
        launches = self._take_ready(free)
        self._refilled += len(launches)
        return launches

    def exhausted(self) -> bool:
        """Whether every trial left to run is already in flight."""
        assert self._view is not None
        return not self._ready and self._room(self._view) <= 0

    def tick(self, view: ControllerView) -> None:
        """Ask the next trial while every slot is busy (pre-ask); report progress."""
        if (
            not view.stopping
            and not self._ready
            # a sequential sweep (one slot) lets every trial see every result before it
            and self._slots is not None
            and self._slots > 1
            and len(view.in_flight) >= self._slots
            and self._room(view) > 0
        ):
            launch = self._launch(view, ahead=True)
            if launch is not None:  # None: the store answered it (--reuse)
                self._ready.append(launch)
        if self.on_progress is None:
            return
        counts = {**self.tally.counts, Status.RUNNING.value: len(view.in_flight)}
        self.on_progress(
            Progress(self.plan.sweep_id, self.plan.trials, counts, self.tally.best, self.started)
        )

    def on_events(self, view: ControllerView, key: Hashable, events: list[MetricEvent]) -> None:
        """Report the first metric to Optuna as intermediate values; prune when it says so."""
        trial = _trial(key)
        step = self._steps.get(key, 0)
        metric = self.plan.metrics[0]
        for event in events:
            value = event["values"].get(metric)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
            ):
                continue
            trial.report(float(value), step)
            step += 1
        self._steps[key] = step
        if step and trial.should_prune():
            view.stop(key, Status.PRUNED)

    def on_result(self, view: ControllerView, key: Hashable, record: ExecutionRecord) -> None:
        """Tell Optuna how the trial ended; stop the sweep on its stop condition or failures."""
        if self._refilled:  # its slot already runs the next trial (asked_ahead): not idle
            self._refilled -= 1
        else:
            self._freed.append(time.monotonic())
        self._steps.pop(key, None)
        self._settle(view, _trial(key), record)

    def end(self, view: ControllerView, status: Status) -> Status:
        """Save how the sweep ended (``sweep.json``, a ``sweeps`` row); compact a long one."""
        for launch in self._ready:  # asked ahead but never run: not a trial of the sweep
            trial = _trial(launch.key)
            trial.set_user_attr("outcome", Status.SKIPPED)
            self.study.tell(trial, state=TrialState.FAIL)
        self._ready.clear()
        # every finished trial has its rows, even those of an actor that died holding them
        recovery.restore_rows(self.store, finished_ids(self.study))
        if status is Status.COMPLETE and not self.tally.counts.get(Status.COMPLETE):
            status = Status.FAILED  # not one trial gave a result: the sweep did not do its job
        self.result = result = self._result(status)
        # the time freed slots waited for their next trial (sampler, journal), for benchmarks
        self.state.update(status=status, slot_idle_s=round(self.slot_idle_s, 4))
        best_id = result.best.execution_id if isinstance(result.best, TrialSummary) else None
        row = self.plan.row(status, created_at=self.state.created_at, best_execution_id=best_id)
        self.store.write_rows("sweeps", [row])
        if self.plan.trials >= COMPACT_AFTER_TRIALS:
            compact(self.store)
        return status

    # -- trials --------------------------------------------------------------------------

    def _room(self, view: ControllerView) -> int:
        """How many more trials may be asked: ``--trials`` less those done, running, asked."""
        return self.plan.trials - self.tally.done - len(view.in_flight) - len(self._ready)

    def _take_ready(self, free: int) -> list[Launch]:
        """Up to ``free`` trials asked ahead; each runs now (until then status says waiting)."""
        launches = self._ready[:free]
        del self._ready[:free]
        for ahead in launches:
            _trial(ahead.key).set_user_attr("execution_id", ahead.execution_id)
        return launches

    def _launch(self, view: ControllerView, *, ahead: bool = False) -> Launch | None:
        """Ask Optuna for a trial: its launch, or None when the store answered it (``--reuse``).

        ``ahead``: asked while every slot is busy; its execution id is saved when it runs, so
        that until then ``sweep status`` counts it as waiting, not running.
        """
        plan = self.plan
        trial = self.study.ask(trial_distributions(plan.space))
        launch = Launch(
            key=trial,
            spec=plan.template.build({**plan.space.fixed, **trial.params}),
            context=ExecutionContext(
                sweep_id=plan.sweep_id,
                trial_number=trial.number,
                attempt=int(trial.user_attrs.get("attempt", 1)),
            ),
            reuse=plan.reuse,
        )
        # attempt and retry_of were set when the retry was enqueued; the execution id is what
        # resume needs to find this trial's record.
        if not ahead:
            trial.set_user_attr("execution_id", launch.execution_id)
        if self.cache is not None:
            answered = self.cache.answer(launch.spec, launch.execution_id, launch.context)
            if answered is not None:
                trial.set_user_attr("execution_id", launch.execution_id)
                trial.set_user_attr(REUSED_ATTR, answered.reused_from)
                self._settle(view, trial, answered)
                return None
        return launch

    def _settle(self, view: ControllerView, trial: optuna.Trial, record: ExecutionRecord) -> None:
        """Tell Optuna what the trial's record means; end the sweep when it must end."""
        outcome = result_outcome(
            record,
            trial,
            metrics=self.plan.metrics,
            max_retries=self.plan.max_retries,
            log_text=partial(self._log_tail, record),
        )
        self._tell(trial, outcome)
        if outcome.status is Status.COMPLETE and self._stop_condition_met(record):
            view.stop_all()
        self._check_failures(view)

    def _stop_condition_met(self, record: ExecutionRecord) -> bool:
        condition = self.plan.stop_condition
        if condition is None:
            return False
        try:
            return bool(condition.evaluate(record.metrics, record.parameters))
        except Exception:  # a metric it names was never printed: the sweep goes on
            return False

    def _check_failures(self, view: ControllerView) -> None:
        limit = self.plan.max_failures
        if limit is not None and self.tally.counted_failures() > limit:
            view.fail(Status.FAILED)

    def _tell(self, trial: optuna.Trial, outcome: Outcome) -> None:
        """Tell the study (:func:`~sweeper.sweep.outcomes.tell`); count, keep the best."""
        tell(self.study, trial, outcome)
        self.tally.add(outcome)

    def _log_tail(self, record: ExecutionRecord) -> str:
        """The end of the record's log, read once per execution (classified, then grouped)."""
        if record.reused_from:
            return ""
        if self._tail[0] != record.id:
            self._tail = (record.id, read_log_tail(self.store, record.id))
        return self._tail[1]

    # -- recovery ------------------------------------------------------------------------

    def _recover(self) -> None:
        """Settle trials left RUNNING by a killed driver: re-tell finished ones, re-run the rest."""
        study = self.study
        for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            execution_id = frozen.user_attrs.get("execution_id")
            # settle: rows a killed writer never wrote are written, a container it left removed
            record = recovery.settle(self.store, execution_id) if execution_id else None
            outcome = resumed_outcome(
                record,
                frozen,
                metrics=self.plan.metrics,
                max_retries=self.plan.max_retries,
                log_text=partial(self._log_tail, record) if record is not None else lambda: "",
            )
            if outcome.status is Status.INTERRUPTED and record is not None:
                reason = "the sweep driver stopped while it ran; re-run on resume"
                recovery.crash(self.store, record, reason)
            self._tell(optuna.Trial(study, frozen._trial_id), outcome)

    # -- results -------------------------------------------------------------------------

    def _result(self, status: Status) -> SweepResult:
        """How the sweep ended, from its study and what the policy kept on the side."""
        plan = self.plan
        saved = self.state.data.get("warm_start")  # a resumed sweep's, from sweep.json
        return sweep_result(
            self.study,
            plan.sweep_id,
            plan.metrics,
            plan.directions,
            status=status,
            warm_start=self.warm_start or (WarmStart.from_dict(saved) if saved else None),
            complete=complete_trials(self.study, plan.metrics),
        )


def finished_ids(study: optuna.Study) -> list[str]:
    """The execution ids of a study's finished trials."""
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    trials = study.get_trials(deepcopy=False, states=states)
    return [str(t.user_attrs["execution_id"]) for t in trials if t.user_attrs.get("execution_id")]


def compact(store: RecordStore) -> None:
    """Merge a long sweep's many small part files so that queries stay fast (readers see no change)."""
    for dataset in ("executions", "metrics", "artifacts"):
        try:
            store.compact(dataset)
        except SweeperError:
            pass  # another process is compacting it; its result serves us as well


def _trial(key: Hashable) -> optuna.Trial:
    """The trial a launch's key is (the sweep's keys are its Optuna trials)."""
    assert isinstance(key, optuna.Trial)
    return key


#: The environment variable that sets how long a sweep's actors hold finished executions'
#: dataset rows before writing them (seconds; 0 writes each execution's rows at once).
ROWS_FLUSH_ENV = "SWEEPER_ROWS_FLUSH_S"
#: One part per dataset and actor every 2 s instead of per execution: `sweep ls` sees a
#: finished trial at most this late (execution.json and `sweep status` at once).
DEFAULT_ROWS_FLUSH_S = "2"


def rows_flush_s() -> float:
    """How long actors hold rows: :data:`ROWS_FLUSH_ENV`, else :data:`DEFAULT_ROWS_FLUSH_S`."""
    text = os.environ.get(ROWS_FLUSH_ENV, DEFAULT_ROWS_FLUSH_S)
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value < 0:
        raise SweeperError(
            f"{ROWS_FLUSH_ENV} must be a number of seconds (0 or more), not {text!r}"
        )
    return value


#: Sweeps at least this long compact the store's datasets when they end.
COMPACT_AFTER_TRIALS = 50
