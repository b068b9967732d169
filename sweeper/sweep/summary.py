"""How a saved sweep stands now, running or not: :func:`sweep_summary` (``sweep status``, and
``sweeper.results.open(...).status(sweep_id)``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sweeper.errors import SweeperError
from sweeper.status import Status
from sweeper.store import RecordStore
from sweeper.sweep.budget import Budget, Spent
from sweeper.sweep.forecasting import sweep_forecast
from sweeper.sweep.result import SweepResult, WarmStart
from sweeper.sweep.state import sweep_resources, sweep_result
from sweeper.sweep.study import load_study


def saved_sweep(store: RecordStore, sweep_id: str) -> dict[str, Any]:
    """The sweep's ``sweep.json``; a :class:`SweeperError` for an unknown id."""
    data = store.get_sweep(sweep_id)
    if not data:
        raise SweeperError(f'unknown sweep "{sweep_id}" in the store {store.location}')
    return data


def sweep_summary(store: RecordStore, sweep_id: str) -> SweepResult:
    """How a saved sweep stands now: counts, best, resources, forecast and budget."""
    saved = saved_sweep(store, sweep_id)
    options = saved["options"]
    study = load_study(store, sweep_id, options.get("storage"))
    warm = saved.get("warm_start")
    resources = sweep_resources(store, sweep_id)
    result = sweep_result(
        study,
        sweep_id,
        options["metrics"],
        options.get("directions"),
        status=Status(saved["status"]),
        warm_start=WarmStart.from_dict(warm) if warm else None,
        trials_asked=options.get("trials"),
        resources=resources,
    )
    done = sum(result.counts[k] for k in ("complete", "error", "pruned"))
    budget = Budget.of(options.get("budget"))
    report = None
    if budget.any:
        wall = Spent.from_dict(saved.get("spent")).wall_s
        report = budget.to_dict(
            Spent(wall, resources.cpu_s, resources.gpu_s), saved.get("budget_stop")
        )
    forecast = sweep_forecast(store, sweep_id, study, options, done=done)
    return replace(result, forecast=forecast, budget=report)
