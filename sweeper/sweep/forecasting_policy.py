"""A sweep that forecasts itself and keeps to its budget: :class:`ForecastingPolicy`.

A :class:`~sweeper.sweep.policy.SweepPolicy` whose progress carries the forecast of the
rest (:mod:`sweeper.forecast`), which asks no more trials once one more would go beyond its
budget (:mod:`sweeper.sweep.budget`) and then ends ``stopped``, saying why, and which stops
a trial that runs ``--straggler-factor`` times longer than its parameters' forecast duration
(:mod:`sweeper.forecast.straggler`) as a ``time_limit`` failure. With a budget the forecast is
worked out again when a trial ends (the next ask must see what the budget leaves), and at
most every :data:`REFRESH_S` seconds between; without one it only informs the progress line,
and is worked out at most every :data:`REFRESH_S` seconds, in :meth:`ForecastingPolicy.tick`,
after the freed slots were filled: never between a result and the trial its slot runs next
(a forecast of a long sweep simulates all its trials, milliseconds each time).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import replace
from typing import Any

import optuna

from sweeper.cluster.controller import ControllerView, Launch
from sweeper.forecast import DurationModel, FinishedTrial, Forecast, RunningTrial, forecast
from sweeper.forecast.simulate import MIN_OWN
from sweeper.forecast.straggler import MIN_FINISHED, straggler_reason
from sweeper.record import ExecutionRecord, FailureKind
from sweeper.status import Status
from sweeper.sweep import forecasting
from sweeper.sweep.budget import Budget, Spent
from sweeper.sweep.plan import SweepPlan
from sweeper.sweep.policy import Progress, SweepPolicy
from sweeper.sweep.state import sweep_resources

OnProgress = Callable[[Progress], None] | None
#: Seconds between two forecasts while no trial ends.
REFRESH_S = 2.0


class ForecastingPolicy(SweepPolicy):
    """The sweep policy, plus its forecast and budget (see the module's docstring)."""

    def __init__(self, plan: SweepPlan, *args: Any, on_progress: OnProgress = None) -> None:
        """As :class:`SweepPolicy`'s: ``on_progress`` sees each snapshot with its forecast."""
        shown: OnProgress = None
        if on_progress is not None:
            shown = lambda p: on_progress(replace(p, forecast=self.forecast))  # noqa: E731
        super().__init__(plan, *args, on_progress=shown)
        self.budget = Budget.of(plan.options.budget)
        self.metric = plan.metrics[0] if len(plan.metrics) == 1 else None
        self.finished: list[FinishedTrial] = []
        self.prior: list[FinishedTrial] = []
        self.forecast: Forecast | None = None
        #: Why the budget stopped the asking (None: it did not).
        self.over_budget: str | None = None
        self._spent_before = Spent()
        self._run_started: dict[Hashable, float] = {}
        self._refreshed = 0.0
        self._slots_seen = 1
        self._finished_before = 0
        #: The duration model stragglers are judged by (None: to fit again), and its trials.
        self._model: tuple[DurationModel, list[FinishedTrial]] | None = None
        self._stragglers: set[Hashable] = set()

    def start(self, view: ControllerView) -> None:
        """Start the sweep; read what it and earlier sweeps of its step already ran."""
        super().start(view)
        rows = forecasting.execution_rows(self.store)
        own = [r for r in rows if r["sweep_id"] == self.plan.sweep_id]
        self.finished = forecasting.finished_trials(own, self.metric)
        self._finished_before = len(self.finished)
        self.prior = forecasting.prior_trials(rows, self.plan.step.name, self.plan.sweep_id)
        saved = Spent.from_dict(self.state.data.get("spent"))
        used = sweep_resources(self.store, self.plan.sweep_id)
        self._spent_before = Spent(saved.wall_s, used.cpu_s, used.gpu_s)
        self._refresh(view)

    def ask(self, view: ControllerView, free: int) -> list[Launch]:
        """The sweep's next trials, none once the budget is reached."""
        return [] if self.over_budget else super().ask(view, free)

    def asked_ahead(self, view: ControllerView, free: int) -> list[Launch]:
        """Trials asked ahead, none once the budget is reached."""
        return [] if self.over_budget else super().asked_ahead(view, free)

    def tick(self, view: ControllerView) -> None:
        """Note the trials that started; forecast again when it is time; report progress."""
        now = time.monotonic()
        for key in view.in_flight:
            self._run_started.setdefault(key, now)
        self._slots_seen = max(self._slots_seen, len(view.in_flight))
        if self.plan.options.straggler_factor is not None:
            self._stop_stragglers(view, now, self.plan.options.straggler_factor)
        if now - self._refreshed >= REFRESH_S:
            self._refresh(view)
        super().tick(view)

    def on_result(self, view: ControllerView, key: Hashable, record: ExecutionRecord) -> None:
        """Tell the trial's end; learn its duration; forecast again if there is a budget."""
        super().on_result(view, key, record)
        self._run_started.pop(key, None)
        trial = forecasting.finished_trial(record, self.metric)
        if trial is not None:
            self.finished.append(trial)
            self._model = None
        if self.budget.any:
            self._refresh(view)

    def end(self, view: ControllerView, status: Status) -> Status:
        """End as the sweep does (``stopped`` when the budget ended it); save what it spent."""
        if self.over_budget and status is Status.COMPLETE:
            status = Status.STOPPED
        spent = self.spent()
        self.state.update(spent=spent.to_dict(), budget_stop=self.over_budget)
        status = super().end(view, status)
        self._refresh(view)
        if self.result is not None:
            budget = self.budget.to_dict(spent, self.over_budget) if self.budget.any else None
            self.result = replace(self.result, forecast=self.forecast, budget=budget)
        return status

    def spent(self) -> Spent:
        """Wall time (all the sweep's runs) and CPU/GPU seconds its executions used so far."""
        before = self._spent_before
        return Spent(
            before.wall_s + time.monotonic() - self.started,
            before.cpu_s + sum(t.cpu_s or 0.0 for t in self._new_trials()),
            before.gpu_s + sum(t.gpu_s or 0.0 for t in self._new_trials()),
        )

    def _new_trials(self) -> list[FinishedTrial]:
        """The trials that finished in this run (those before are in ``_spent_before``)."""
        return self.finished[self._finished_before :]

    def _refresh(self, view: ControllerView) -> None:
        """Forecast the rest; stop the asking when one more trial would break the budget."""
        self._refreshed = time.monotonic()
        running = [
            RunningTrial(dict(_params(key)), self._refreshed - started)
            for key, started in self._run_started.items()
            if key in view.in_flight
        ]
        remaining = max(0, self.plan.trials - self.tally.done - len(running))
        slots = self.plan.parallel or self._slots_seen
        goal = self.plan.options.target
        target = None if goal is None else (goal, self.plan.directions[0])
        self.forecast = forecast(
            self.finished, running, remaining, slots, prior=self.prior, target=target
        )
        if self.budget.any and not self.over_budget and remaining > 0:
            next_one = forecast(self.finished, running, 1, slots, prior=self.prior)
            self.over_budget = self.budget.exceeded_by(self.spent(), next_one)

    def _stop_stragglers(self, view: ControllerView, now: float, factor: float) -> None:
        """Stop each trial in flight that runs ``factor`` times its forecast duration."""
        if self._model is None:
            # complete trials only: a pruned or stopped trial's run says little of a whole one
            own = [t for t in self.finished if t.status == Status.COMPLETE]
            lent = [t for t in self.prior if t.status == Status.COMPLETE]
            basis = [t for t in (own if len(own) >= MIN_OWN else lent + own) if t.duration_s > 0]
            model = DurationModel.fit([t.params for t in basis], [t.duration_s for t in basis])
            self._model = (model, basis)
        model, basis = self._model
        if len(basis) < MIN_FINISHED:
            return
        for key, started in self._run_started.items():
            if key in self._stragglers or key not in view.in_flight:
                continue
            params = [t.params for t in basis]
            why = straggler_reason(
                model, params, _params(key), elapsed_s=now - started, factor=factor
            )
            if why is not None:
                self._stragglers.add(key)
                view.stop(key, Status.STOPPED, (FailureKind.TIME_LIMIT, why))


def _params(key: Hashable) -> dict[str, object]:
    return dict(key.params) if isinstance(key, optuna.Trial) else {}
