"""A sweep's decisions, as a :class:`~sweeper.cluster.controller.Policy`: what Optuna asks next
and what each trial's end means; the :class:`~sweeper.cluster.controller.Controller` runs them.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from sweeper.cluster import recovery
from sweeper.cluster.actors import ResourceShape
from sweeper.cluster.connect import ClusterInfo
from sweeper.cluster.controller import ControllerView, Launch, Policy
from sweeper.errors import SweeperError
from sweeper.execution.runner import ExecutionContext
from sweeper.record import ExecutionRecord, MetricEvent, objective_values
from sweeper.status import Status
from sweeper.sweep.failures import (
    CLASS_ATTR,
    INFRASTRUCTURE,
    RESOURCE_CLASSES,
    failure_class,
    failure_reason,
    read_log_tail,
    tell_state,
)
from sweeper.sweep.history import (
    REUSED_ATTR,
    TrialCache,
    WarmStart,
    trial_distributions,
    warm_start,
)
from sweeper.sweep.state import DEFAULT_OUTCOMES, outcome_counts, own_best

if TYPE_CHECKING:
    # engine.py builds the policy (and defines Progress, which the CLI imports from there)
    from sweeper.sweep.engine import Progress, SweepRunner


class SweepPolicy(Policy):
    """Optuna asks, each trial runs as one execution, its end is told back to Optuna.

    Also what a sweep keeps on the side: counts and the best value for progress, crashed
    trials retried as new ones, ``--max-failures``, the task's stop condition, trials a
    killed driver left running (settled on resume), ``sweep.json`` and the ``sweeps`` row.
    """

    def __init__(
        self,
        runner: SweepRunner,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        on_start: Callable[[ClusterInfo], None] | None = None,
    ) -> None:
        self.runner = runner
        self.options = runner.options
        self.on_progress = on_progress
        self.on_start = on_start
        self.poll_metrics = self.options.pruner != "none"
        self.probe = runner._spec({})
        self.shape: ResourceShape = ResourceShape.of(self.probe)
        self.counts: dict[str, int] = {}
        self.best: Any = None
        self.started = time.monotonic()
        self.summary: dict[str, Any] = {}
        #: Failed trials by class (oom, time_limit, ...), for ``--max-failures``.
        self.failure_classes: Counter[str] = Counter()
        self.warm_start: WarmStart | None = None
        self.cache = TrialCache(runner.store, self.options.runtime) if self.options.reuse else None
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
        slots = self.options.parallel or max(
            1, int(cluster.largest("CPU") // max(cpus, 1e-9)) if cpus else 1
        )
        self._slots = min(slots, self.options.trials or slots)
        return self._slots

    def start(self, controller: ControllerView) -> None:
        """Save a new sweep (or load a resumed one), then settle what a killed driver left."""
        runner = self.runner
        self._view = controller
        if not runner.resume:
            runner.state.create(
                self.options.to_dict(self.probe.secret_names),
                runner.code_version,
                runner.code_archive,
                runner.space.to_json(),
            )
        study = self._study = runner._study()
        if not runner.resume:
            if runner.warm_sources:
                self._warm_start(study)
            for params in runner.space.parameter_sets:
                study.enqueue_trial(params)
        runner.store.write_rows("sweeps", [runner._sweep_row(Status.RUNNING)])
        if self.on_start is not None:
            self.on_start(controller.cluster)
        self._recover(controller)
        if runner.resume:  # rows a killed actor held are rebuilt from the records
            recovery.restore_rows(self.runner.store, self._finished_ids())
        # Counted here rather than re-read from the study on every turn (O(trials) each time).
        self.counts = {k: v for k, v in outcome_counts(study).items() if k != Status.RUNNING}
        self.failure_classes = Counter(
            str(t.user_attrs[CLASS_ATTR])
            for t in study.get_trials(deepcopy=False)
            if t.user_attrs.get("outcome") == Status.ERROR and CLASS_ATTR in t.user_attrs
        )
        self.best = self._best_value()
        self.started = time.monotonic()
        self._check_failures(controller)

    def ask(self, controller: ControllerView, free: int) -> list[Launch]:
        """Trials up to ``free`` (the one asked ahead first), never beyond ``--trials``.

        A trial the store answers (``--reuse``) takes no slot: another is asked in its place.
        """
        launches = self._take_ready(free)
        # those taken are not in flight yet, hence the len(launches) in the room
        while (
            len(launches) < free
            and not controller.stopping
            and self._room(controller) - len(launches) > 0
        ):
            launch = self._launch(controller)
            if launch is not None:
                launches.append(launch)
        now = time.monotonic()
        for _ in launches:
            if self._freed:
                self.slot_idle_s += now - self._freed.pop(0)
        return launches

    def asked_ahead(self, controller: ControllerView, free: int) -> list[Launch]:
        """The trials asked ahead, to start in slots freed by results not yet told.

        Those results could not change them (they were asked before), so the slot does
        not wait for the tell. Not when a result may end the sweep (a stop condition,
        ``--max-failures``): there a trial asked ahead must not start after the last one.
        """
        if self.runner.stop_condition is not None or self.options.max_failures is not None:
            return []
        launches = self._take_ready(free)
        self._refilled += len(launches)
        return launches

    def _take_ready(self, free: int) -> list[Launch]:
        """Up to ``free`` trials asked ahead; each runs now (until then status says waiting)."""
        launches = self._ready[:free]
        del self._ready[:free]
        for ahead in launches:
            trial: optuna.Trial = ahead.key  # type: ignore[assignment]
            trial.set_user_attr("execution_id", ahead.execution_id)
        return launches

    def exhausted(self) -> bool:
        """Whether every trial left to run is already in flight."""
        assert self.options.trials is not None and self._view is not None
        return not self._ready and self._room(self._view) <= 0

    def tick(self, controller: ControllerView) -> None:
        """Ask the next trial while every slot is busy (pre-ask); report progress."""
        from sweeper.sweep.engine import Progress

        if (
            not controller.stopping
            and not self._ready
            # a sequential sweep (one slot) lets every trial see every result before it
            and self._slots is not None
            and self._slots > 1
            and len(controller.in_flight) >= self._slots
            and self._room(controller) > 0
        ):
            launch = self._launch(controller, ahead=True)
            if launch is not None:  # None: the store answered it (--reuse)
                self._ready.append(launch)
        if self.on_progress is None:
            return
        assert self.options.trials is not None
        counts = {**self.counts, Status.RUNNING.value: len(controller.in_flight)}
        self.on_progress(
            Progress(self.runner.sweep_id, self.options.trials, counts, self.best, self.started)
        )

    def on_events(
        self, controller: ControllerView, key: Hashable, events: list[MetricEvent]
    ) -> None:
        """Report the first metric to Optuna as intermediate values; prune when it says so."""
        trial: optuna.Trial = key  # type: ignore[assignment]
        step = self._steps.get(key, 0)
        metric = self.options.metrics[0]
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
            controller.stop(key, Status.PRUNED)

    def on_result(self, controller: ControllerView, key: Hashable, record: ExecutionRecord) -> None:
        """Tell Optuna how the trial ended; stop the sweep on its stop condition or failures."""
        if self._refilled:  # its slot already runs the next trial (asked_ahead): not idle
            self._refilled -= 1
        else:
            self._freed.append(time.monotonic())
        self._steps.pop(key, None)
        self._settle(controller, key, record.to_dict())  # type: ignore[arg-type]

    def end(self, controller: ControllerView, status: Status) -> Status:
        """Save how the sweep ended (``sweep.json``, a ``sweeps`` row); compact a long one."""
        runner = self.runner
        for launch in self._ready:  # asked ahead but never run: not a trial of the sweep
            trial: optuna.Trial = launch.key  # type: ignore[assignment]
            trial.set_user_attr("outcome", Status.SKIPPED)
            self.study.tell(trial, state=TrialState.FAIL)
        self._ready.clear()
        # every finished trial has its rows, even those of an actor that died holding them
        recovery.restore_rows(self.runner.store, self._finished_ids())
        if status is Status.COMPLETE and not self.counts.get(Status.COMPLETE):
            status = Status.FAILED  # not one trial gave a result: the sweep did not do its job
        self.summary = runner.summary(self.study)
        # the time freed slots waited for their next trial (sampler, journal), for benchmarks
        runner.state.update(status=status, slot_idle_s=round(self.slot_idle_s, 4))
        best = self.summary.get("best")
        best_id = best.get("execution_id") if isinstance(best, dict) else None
        runner.store.write_rows("sweeps", [runner._sweep_row(status, best_id)])
        assert self.options.trials is not None
        if self.options.trials >= COMPACT_AFTER_TRIALS:
            self._compact()
        return status

    # -- trials --------------------------------------------------------------------------

    def _room(self, controller: ControllerView) -> int:
        """How many more trials may be asked: ``--trials`` less those done, running, asked."""
        assert self.options.trials is not None
        return self.options.trials - self._done() - len(controller.in_flight) - len(self._ready)

    def _finished_ids(self) -> list[str]:
        states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        trials = self.study.get_trials(deepcopy=False, states=states)
        return [
            str(t.user_attrs["execution_id"]) for t in trials if t.user_attrs.get("execution_id")
        ]

    def _done(self) -> int:
        return sum(self.counts.get(k, 0) for k in Status.counted())

    def counted_failures(self) -> int:
        """Failed trials that count towards ``--max-failures``: not those the resources caused."""
        steered = sum(self.failure_classes[kind] for kind in RESOURCE_CLASSES)
        return self.counts.get(Status.ERROR, 0) - steered

    def _check_failures(self, controller: ControllerView) -> None:
        limit = self.options.max_failures
        if limit is not None and self.counted_failures() > limit:
            controller.fail(Status.FAILED)

    def _settle(
        self, controller: ControllerView, trial: optuna.Trial, record: dict[str, Any]
    ) -> None:
        if self._finish(trial, record):
            controller.stop_all()
        self._check_failures(controller)

    def _warm_start(self, study: optuna.Study) -> None:
        """Add the complete trials of the ``--warm-start`` sweeps that fit this space."""
        runner = self.runner
        self.warm_start = warm_start(
            study, runner.store, runner.warm_sources, runner.space, self.options.metrics
        )
        runner.state.update(warm_start=self.warm_start.to_dict())

    def _launch(self, controller: ControllerView, *, ahead: bool = False) -> Launch | None:
        """Ask Optuna for a trial: its launch, or None when the store answered it (``--reuse``).

        ``ahead``: asked while every slot is busy; its execution id is saved when it runs, so
        that until then ``sweep status`` counts it as waiting, not running.
        """
        runner = self.runner
        space = runner.space
        trial = self.study.ask(trial_distributions(space))
        params = {**space.fixed, **trial.params}
        attempt = int(trial.user_attrs.get("attempt", 1))
        launch = Launch(
            key=trial,
            spec=runner._spec(params),
            context=ExecutionContext(
                sweep_id=runner.sweep_id, trial_number=trial.number, attempt=attempt
            ),
            reuse=self.options.reuse,
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
                self._settle(controller, trial, answered.to_dict())
                return None
        return launch

    def _finish(self, trial: optuna.Trial, record: dict[str, Any]) -> bool:
        """Tell Optuna how a trial ended; return True when the sweep must stop."""
        status = record.get("status")
        kind = None
        if status not in (Status.COMPLETE, Status.PRUNED, Status.STOPPED):
            kind = failure_class(ExecutionRecord.from_dict(record), self._log_tail(record))
        if kind == INFRASTRUCTURE:
            # A retry is a new trial: the crashes so far travel with it in its user attrs.
            used = int(trial.user_attrs.get("crashes", 0))
            if used < self.options.max_retries:
                self._tell(trial, TrialState.FAIL, Status.CRASHED, record)
                self.study.enqueue_trial(
                    trial.params,
                    user_attrs={
                        "retry_of": trial.number,
                        "attempt": int(trial.user_attrs.get("attempt", 1)) + 1,
                        "crashes": used + 1,
                    },
                )
                return False
            what = "crashed" if status == Status.CRASHED else "failed"
            reason = f"{what} {used + 1} times: {record.get('error')}"
            self._tell(trial, TrialState.FAIL, Status.ERROR, record, reason=reason)
            return False
        if status == Status.PRUNED:
            self._tell(trial, TrialState.PRUNED, Status.PRUNED, record)
            return False
        if status != Status.COMPLETE:
            outcome = Status.ERROR if status == Status.ERROR else status or Status.ERROR
            # oom and time_limit are told as infeasible, so that TPE avoids their region
            state = tell_state(trial, kind) if outcome == Status.ERROR else TrialState.FAIL
            self._tell(trial, state, outcome, record)
            return False
        metrics = self.options.metrics
        values = objective_values(record.get("metrics") or {}, metrics)
        if values is None:
            missing = [
                m for m in metrics if not isinstance(record.get("metrics", {}).get(m), (int, float))
            ]
            reason = f"the step never printed the metric {', '.join(missing) or metrics[0]} as a finite number"
            self._tell(trial, TrialState.FAIL, Status.ERROR, record, reason=reason)
            return False
        self._tell(trial, TrialState.COMPLETE, Status.COMPLETE, record, values=values)
        stop_condition = self.runner.stop_condition
        if stop_condition is not None:
            try:
                return bool(
                    stop_condition.evaluate(record.get("metrics", {}), record.get("parameters", {}))
                )
            except Exception:
                return False
        return False

    def _tell(
        self,
        trial: optuna.Trial,
        state: TrialState,
        outcome: str,
        record: Mapping[str, Any],
        *,
        values: list[float] | None = None,
        reason: str | None = None,
    ) -> None:

        if outcome != DEFAULT_OUTCOMES.get(state):
            trial.set_user_attr("outcome", outcome)
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        if values is not None and len(values) == 1:
            better = self.best is None or (
                values[0] < self.best
                if self.options.directions[0] == "minimize"
                else values[0] > self.best
            )
            if better:
                self.best = values[0]
        elif values:
            self.best = self.counts.get(Status.COMPLETE, 0)
        if state == TrialState.FAIL or outcome == Status.ERROR:
            # worked out once, here, so that `sweep status` groups reasons without the logs
            log_text = self._log_tail(record)
            typed = ExecutionRecord.from_dict(record)
            trial.set_user_attr("reason", failure_reason(typed, reason=reason, log_text=log_text))
            if outcome == Status.ERROR:
                kind = failure_class(typed, log_text)
                trial.set_user_attr(CLASS_ATTR, kind)
                self.failure_classes[kind] += 1
        if state == TrialState.COMPLETE:
            self.study.tell(trial, values or [UNRANKED_VALUE])
        else:
            self.study.tell(trial, state=state)

    def _log_tail(self, record: Mapping[str, Any]) -> str:
        """The end of the record's log, read once per execution (classified, then grouped)."""
        execution_id = record.get("id")
        if not execution_id or record.get(REUSED_ATTR):
            return ""
        if self._tail[0] != execution_id:
            self._tail = (str(execution_id), read_log_tail(self.runner.store, str(execution_id)))
        return self._tail[1]

    # -- recovery ------------------------------------------------------------------------

    def _recover(self, controller: ControllerView) -> None:
        """Settle trials left RUNNING by a killed driver: re-tell finished ones, re-run the rest."""

        study = self.study
        for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            execution_id = frozen.user_attrs.get("execution_id")
            # settle: rows a killed writer never wrote are written, a container it left removed
            settled = recovery.settle(self.runner.store, execution_id) if execution_id else None
            trial = optuna.Trial(study, frozen._trial_id)
            if settled is not None and settled.status in (
                Status.COMPLETE,
                Status.ERROR,
                Status.PRUNED,
                Status.STOPPED,
            ):
                record = settled.to_dict()
                values = (
                    objective_values(record.get("metrics") or {}, self.options.metrics)
                    if settled.status is Status.COMPLETE
                    else None
                )
                if values is not None:
                    self._tell(trial, TrialState.COMPLETE, Status.COMPLETE, record, values=values)
                elif settled.status is Status.PRUNED:
                    self._tell(trial, TrialState.PRUNED, Status.PRUNED, record)
                else:
                    reason = (
                        None
                        if settled.status is not Status.COMPLETE
                        else "the step never printed the metric"
                    )
                    self._tell(trial, TrialState.FAIL, Status.ERROR, record, reason=reason)
                continue
            if settled is not None:
                recovery.crash(
                    self.runner.store,
                    settled,
                    "the sweep driver stopped while it ran; re-run on resume",
                )
            trial.set_user_attr("outcome", Status.INTERRUPTED)
            study.tell(trial, state=TrialState.FAIL)
            study.enqueue_trial(
                frozen.params,
                user_attrs={
                    "retry_of": frozen.number,
                    # one asked ahead that never ran keeps its attempt number
                    "attempt": int(frozen.user_attrs.get("attempt", 1)) + bool(execution_id),
                    "crashes": int(frozen.user_attrs.get("crashes", 0)),
                },
            )

    # -- results -------------------------------------------------------------------------

    def _best_value(self) -> Any:
        metrics = self.options.metrics
        if not metrics:
            return None
        best = own_best(self.study, self.options.directions)
        if best is None:
            return None
        return best.value if len(metrics) == 1 else len(best)  # type: ignore[union-attr,arg-type]

    def _compact(self) -> None:
        """Merge the sweep's many small part files so that queries stay fast (readers see no change)."""
        for dataset in ("executions", "metrics", "artifacts"):
            try:
                self.runner.store.compact(dataset)
            except SweeperError:
                pass  # another process is compacting it; its result serves us as well


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
#: What an unranked sweep tells Optuna for every complete trial: Optuna completes a trial
#: only with a value, and a constant one ranks no trial above another.
UNRANKED_VALUE = 0.0
