"""A sweep's records as the forecast's values, and its forecast (:mod:`sweeper.forecast`).

:func:`finished_trials` reads the executions rows (the records' truth: run time, status,
CPU and GPU seconds), :func:`slots_used` how many ran at once, :func:`sweep_forecast` puts
them together with the study's running trials for ``sweep status`` and the results API;
the running sweep keeps its own (:mod:`sweeper.sweep.forecasting_policy`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import optuna
import pyarrow as pa
from optuna.trial import TrialState

from sweeper.forecast import FinishedTrial, Forecast, RunningTrial, forecast
from sweeper.record import ExecutionRecord
from sweeper.status import Status
from sweeper.store import RecordStore

_COLUMNS = [
    "execution_id", "counter", "sweep_id", "step", "status", "parameters", "metrics",
    "duration_s", "started_at", "ended_at", "cpu_s", "gpu_s",
]  # fmt: skip
#: Earlier sweeps' trials lent to a sweep with few of its own: at most this many, the newest.
PRIOR_TRIALS = 50


def finished_trial(record: ExecutionRecord, metric: str | None) -> FinishedTrial | None:
    """A finished record as the forecast reads it (None: not a trial that ran)."""
    if record.duration_s is None or record.status not in Status.counted() or record.reused_from:
        return None
    usage = record.usage
    return FinishedTrial(
        params=dict(record.parameters),
        duration_s=float(record.duration_s),
        status=str(record.status),
        cpu_s=usage.cpu_s if usage is not None else None,
        gpu_s=usage.gpu_s if usage is not None else None,
        value=_number(record.metrics.get(metric))
        if metric and record.status == Status.COMPLETE
        else None,
        span=_span(_epoch(record.started_at), _epoch(record.ended_at)),
    )


def execution_rows(store: RecordStore) -> list[dict[str, Any]]:
    """The executions rows, one per execution (its last, final, row), in counter order;
    ``started_at`` and ``ended_at`` as microseconds (a zoned timestamp made a Python value
    would import pandas, which ``sweep status`` does without)."""
    table = store.read_dataset("executions", columns=_COLUMNS)
    for name in ("started_at", "ended_at"):
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, table.column(name).cast(pa.int64()))
    last: dict[str, dict[str, Any]] = {}
    for row in table.to_pylist():
        last[row["execution_id"]] = row
    return sorted(last.values(), key=lambda row: row["counter"] or 0)


def finished_trials(rows: Iterable[Mapping[str, Any]], metric: str | None) -> list[FinishedTrial]:
    """The finished trials among executions rows, in the order they ended."""
    ended = [r for r in rows if r["status"] in Status.counted() and r["duration_s"] is not None]
    ended.sort(key=lambda r: r["ended_at"] or 0)
    return [
        FinishedTrial(
            params=json.loads(r["parameters"] or "{}"),
            duration_s=float(r["duration_s"]),
            status=str(r["status"]),
            cpu_s=r["cpu_s"],
            gpu_s=r["gpu_s"],
            value=_metric(r, metric),
            span=_span(r["started_at"], r["ended_at"], 1e6),
        )
        for r in ended
    ]


def slots_used(rows: Iterable[Mapping[str, Any]]) -> int:
    """The most executions that ran at once (at least 1)."""
    edges: list[tuple[int, int]] = []
    for row in rows:
        if row["started_at"] is not None and row["ended_at"] is not None:
            edges += [(row["started_at"], 1), (row["ended_at"], -1)]
    most = running = 0
    for _, change in sorted(edges, key=lambda edge: (edge[0], edge[1])):
        running += change
        most = max(most, running)
    return max(1, most)


def sweep_forecast(
    store: RecordStore,
    sweep_id: str,
    study: optuna.Study,
    options: Mapping[str, Any],
    *,
    done: int,
    now: datetime | None = None,
) -> Forecast:
    """The forecast of a saved sweep (running or not): its records, its study's running trials,
    ``done`` trials of its ``options["trials"]`` finished."""
    rows = execution_rows(store)
    own = [r for r in rows if r["sweep_id"] == sweep_id]
    metrics = options.get("metrics") or []
    metric = metrics[0] if len(metrics) == 1 else None
    now = now or datetime.now()  # Optuna's trial times are naive local times
    running = [
        RunningTrial(dict(t.params), (now - t.datetime_start).total_seconds())
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if "execution_id" in t.user_attrs and t.datetime_start is not None
    ]
    remaining = max(0, int(options.get("trials") or 0) - done - len(running))
    return forecast(
        finished_trials(own, metric),
        running,
        remaining,
        options.get("parallel") or max(slots_used(own), len(running)),
        prior=prior_trials(rows, str(options.get("step")), sweep_id),
        target=target_of(options),
    )


def prior_trials(
    rows: Sequence[Mapping[str, Any]], step: str, sweep_id: str
) -> list[FinishedTrial]:
    """The newest finished trials of earlier sweeps of ``step``."""
    earlier = [r for r in rows if r["step"] == step and r["sweep_id"] not in (None, sweep_id)]
    return finished_trials(earlier, None)[-PRIOR_TRIALS:]


def target_of(options: Mapping[str, Any]) -> tuple[float, str] | None:
    """``--target`` and the direction of the metric it is for, from a sweep's options."""
    target = options.get("target")
    directions = options.get("directions") or ["minimize"]
    return None if target is None else (float(target), str(directions[0]))


def _metric(row: Mapping[str, Any], metric: str | None) -> float | None:
    if metric is None or row["status"] != Status.COMPLETE:
        return None
    return _number(json.loads(row["metrics"] or "{}").get(metric))


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _span(
    started: float | None, ended: float | None, per_second: float = 1.0
) -> tuple[float, float] | None:
    """(start, end) in seconds, when both are known."""
    if started is None or ended is None:
        return None
    return started / per_second, ended / per_second


def _epoch(stamp: str | None) -> float | None:
    """An ISO time of a record as seconds since the epoch (None: unknown or unreadable)."""
    try:
        return datetime.fromisoformat(stamp).timestamp() if stamp else None
    except ValueError:
        return None
