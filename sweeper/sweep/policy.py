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
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import optuna
from optuna.trial import TrialState

from sweeper.cluster import recovery
from sweeper.cluster.actors import ResourceShape
from sweeper.cluster.connect import ClusterInfo
from sweeper.cluster.controller import ControllerView, Launch, Policy
from sweeper.cluster.distributed import bundles_per_node
from sweeper.errors import SweeperError
from sweeper.forecast import Forecast
from sweeper.record import ExecutionRecord, MetricEvent
from sweeper.status import Status
from sweeper.store import RecordStore
from sweeper.sweep.failures import CLASS_ATTR, RESOURCE_CLASSES, read_log_tail
from sweeper.sweep.history import REUSED_ATTR, TrialCache, trial_distributions, warm_start
from sweeper.sweep.indexed_storage import grouped_writes, write_held
from sweeper.sweep.left_running import rerun_in_order, settle_left_running
from sweeper.sweep.outcomes import Outcome, result_outcome, tell
from sweeper.sweep.plan import SweepPlan
from sweeper.sweep.reproducible import TOLD_BELOW_ATTR, InOrder, reseed, trial_launch
from sweeper.sweep.result import SweepResult, TrialSummary, WarmStart
from sweeper.sweep.state import (
    COUNTED_OUTCOMES,
    SweepState,
    complete_trials,
    outcome_counts,
    own_best,
    sweep_resources,
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
    #: When the rest is expected to finish (set by a forecasting policy).
    forecast: Forecast | None = None

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
        #: Reproducible mode: trials asked and not told, results held until their turn
        #: (made once the number of slots is known).
        self.order: InOrder | None = None
        self._next_number = 0  # the number of the next trial the study will ask

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
        """``--parallel``, else as many trials as fit on the largest node; at most ``--trials``
        and at most as many as the whole cluster holds at once.

        The controller starts this many actors first (an actor the cluster has no room for
        would hold its trial to the end). The reproducible window is ``--parallel`` still.
        """
        cpus = self.shape.cpus
        wanted = min(
            self.plan.trials,
            self.plan.parallel
            or max(1, int(cluster.largest("CPU") // max(cpus, 1e-9)) if cpus else 1),
        )
        self._slots = min(wanted, max(1, sum(bundles_per_node(cluster, self.shape))))
        if self.plan.reproducible:
            self.order = InOrder(window=wanted)
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
        self._next_number = len(study.get_trials(deepcopy=False))
        self._recover()
        if plan.resume:  # rows a killed actor held are rebuilt from the records
            recovery.restore_rows(self.store, finished_ids(self.study))
        self.tally = Tally.of(study, plan.directions)
        self.started = time.monotonic()
        self._check_failures(view)

    def ask(self, view: ControllerView, free: int) -> list[Launch]:
        """Trials up to ``free`` (the one asked ahead first), never beyond ``--trials``.

        A trial the store answers (``--reuse``) takes no slot: another is asked in its place.
        Reproducible: see :meth:`_ask_in_order`.
        """
        if self.order is not None:
            launches = self._ask_in_order(view, free)
        else:
            launches = self._take_ready(free)
        # those taken are not in flight yet, hence the len(launches) in the room
        while (
            self.order is None
            and len(launches) < free
            and not view.stopping
            and self._room(view) - len(launches) > 0
        ):
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
            and self.order is None  # reproducible: a trial is asked in its turn, not ahead
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
        pruned = False
        for value in _numbers(events, self.plan.metrics[0]):
            trial.report(value, step)
            step += 1
            # reproducible: judged at every step, not at whichever step a poll happens to end
            pruned = self.order is not None and trial.should_prune()
            if pruned:
                break
        self._steps[key] = step
        if pruned or (self.order is None and step and trial.should_prune()):
            view.stop(key, Status.PRUNED)

    def on_result(self, view: ControllerView, key: Hashable, record: ExecutionRecord) -> None:
        """Tell Optuna how the trial ended; stop the sweep on its stop condition or failures."""
        if self._refilled:  # its slot already runs the next trial (asked_ahead): not idle
            self._refilled -= 1
        else:
            self._freed.append(time.monotonic())
        self._steps.pop(key, None)
        if self.order is None:
            self._settle(view, _trial(key), record)
            return
        self.order.hold(key, record)
        self._release(view)

    def end(self, view: ControllerView, status: Status) -> Status:
        """Save how the sweep ended (``sweep.json``, a ``sweeps`` row); compact a long one."""
        if self.order is not None:  # results held for their turn: told now, in order
            self.order.discard([launch.key for launch in self._ready])
            for key, record in self.order.drain():
                self._settle(view, _trial(key), record)
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
        """How many more trials may be asked: ``--trials`` less those done, running, asked
        (reproducible: less those asked and not told, wherever they are)."""
        if self.order is not None:  # also those whose result the controller holds this turn
            return self.plan.trials - self.tally.done - self.order.untold
        return self.plan.trials - self.tally.done - len(view.in_flight) - len(self._ready)

    def _ask_in_order(self, view: ControllerView, free: int) -> list[Launch]:
        """Reproducible: the window filled at once (the first trials, or those a resumed
        driver must ask before it tells what it holds), whatever the free slots; then the
        results whose turn has come; up to ``free`` of the trials so asked start now.

        Past the first window a trial is asked only by :meth:`_release`, right after the
        trial ``window`` before it is told: never when a slot happens to free up.
        """
        assert self.order is not None
        while self.order.has_room() and not view.stopping and self._room(view) > 0:
            launch = self._launch(view, ahead=True)
            if launch is not None:  # None: the store answered it, held for its turn
                self._ready.append(launch)
        self._release(view)
        return self._take_ready(free)

    def _take_ready(self, free: int) -> list[Launch]:
        """Up to ``free`` trials asked ahead; each runs now (until then status says waiting)."""
        launches = self._ready[:free]
        del self._ready[:free]
        with grouped_writes(self.study):
            for ahead in launches:
                _trial(ahead.key).set_user_attr("execution_id", ahead.execution_id)
        return launches

    def _launch(self, view: ControllerView, *, ahead: bool = False) -> Launch | None:
        """Ask Optuna for a trial: its launch, or None when the store answered it (``--reuse``).

        ``ahead``: asked while every slot is busy; its execution id is saved when it runs, so
        that until then ``sweep status`` counts it as waiting, not running. The trial's
        writes (its parameters and attributes) go to a database study in one transaction.
        """
        with grouped_writes(self.study):
            trial, launch = self._ask(ahead=ahead)
        write_held(self.study)  # also in a group around: the trial is written before it runs
        if self.cache is not None:
            answered = self.cache.answer(launch.spec, launch.execution_id, launch.context)
            if answered is not None:
                trial.set_user_attr("execution_id", launch.execution_id)
                trial.set_user_attr(REUSED_ATTR, answered.reused_from)
                if self.order is not None:
                    self.order.hold(trial, answered)  # told in its turn (_release)
                else:
                    self._settle(view, trial, answered)
                return None
        return launch

    def _ask(self, *, ahead: bool) -> tuple[optuna.Trial, Launch]:
        """A new trial (reseeded for its number when in order) and its launch."""
        plan = self.plan
        if self.order is not None:
            reseed(self.study, plan, self._next_number)
            self._next_number += 1
        trial = self.study.ask(trial_distributions(plan.space))
        if self.order is not None:
            oldest = self.order.oldest()
            told_below = _trial(oldest).number if oldest is not None else trial.number
            trial.set_user_attr(TOLD_BELOW_ATTR, told_below)
            self.order.add(trial)
        launch = trial_launch(plan, trial)
        # attempt and retry_of were set when the retry was enqueued; the execution id is what
        # resume needs to find this trial's record.
        if not ahead:
            trial.set_user_attr("execution_id", launch.execution_id)
        return trial, launch

    def _release(self, view: ControllerView) -> None:
        """Reproducible: tell the results whose turn has come, oldest first, asking the next
        trial after each tell (before the next result is told), while there is room."""
        assert self.order is not None
        while (turn := self.order.next_ready()) is not None:
            key, record = turn
            # a database study writes the tell with the next trial's creation, in one go
            with grouped_writes(self.study):
                self._settle(view, _trial(key), record)
                if not view.stopping and self._room(view) > 0 and self.order.has_room():
                    launch = self._launch(view, ahead=True)
                    if launch is not None:  # None: the store answered it, held for its turn
                        self._ready.append(launch)

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
        if outcome.status is Status.COMPLETE and _stop_condition_met(self.plan, record):
            view.stop_all()
        self._check_failures(view)

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
        """Settle trials left RUNNING by a killed driver: re-tell finished ones, re-run the rest
        (reproducible: in the order they were asked, see :func:`~sweeper.sweep.left_running.rerun_in_order`)."""
        if self.order is not None:
            for trial in rerun_in_order(self.study, self.store, self.order, self.plan):
                self._ready.append(trial_launch(self.plan, trial))
            return
        left = settle_left_running(self.study, self.store, self.plan, self._log_tail)
        for trial, outcome in left:
            self._tell(trial, outcome)

    # -- results -------------------------------------------------------------------------

    def _result(self, status: Status) -> SweepResult:
        """How the sweep ended, from its study and what the policy kept on the side."""
        saved = self.state.data.get("warm_start")  # a resumed sweep's, from sweep.json
        return sweep_result(
            self.study,
            self.plan.sweep_id,
            self.plan.metrics,
            self.plan.directions,
            status=status,
            warm_start=self.warm_start or (WarmStart.from_dict(saved) if saved else None),
            complete=complete_trials(self.study, self.plan.metrics),
            resources=sweep_resources(self.store, self.plan.sweep_id),
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


def _numbers(events: list[MetricEvent], metric: str) -> Iterator[float]:
    """The finite numbers ``metric`` took in ``events``, in order (booleans are not numbers)."""
    for event in events:
        value = event["values"].get(metric)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            yield float(value)


def _stop_condition_met(plan: SweepPlan, record: ExecutionRecord) -> bool:
    """Whether the task's stop condition holds for a complete trial's record."""
    if plan.stop_condition is None:
        return False
    try:
        return bool(plan.stop_condition.evaluate(record.metrics, record.parameters))
    except Exception:  # a metric it names was never printed: the sweep goes on
        return False


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
