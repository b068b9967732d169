"""The forecast checked on history: :func:`replay_forecast` (``sweep replay SWEEP --forecast``).

A recorded sweep is replayed in the order its executions ran: at 10%, 25% and 50% of its
trials ended, the forecast (:func:`sweeper.forecast.forecast`) is made from only what was
known then (the trials ended by that time, those running and how long they had run, the
trials still to start, earlier sweeps of the step that had ended) and compared with the
truth, the time the sweep actually still ran. The forecast is seeded: the same store gives
the same replay.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sweeper.forecast import FinishedTrial, RunningTrial, forecast
from sweeper.store import RecordStore
from sweeper.sweep import forecasting
from sweeper.sweep.summary import saved_sweep

#: The shares of the sweep's trials ended at which the forecast is checked.
PROGRESS = (0.10, 0.25, 0.50)
_US = 1e6  # the rows' timestamps are microseconds


@dataclass(frozen=True)
class ReplayPoint:
    """The forecast made at one point of a recorded sweep, and the truth."""

    progress: float
    #: Seconds since the sweep's first execution started.
    at_s: float
    done: int
    running: int
    remaining: int
    #: The forecast's 10th, 50th and 90th percentiles of the time to finish (seconds).
    p10_s: float | None
    p50_s: float | None
    p90_s: float | None
    #: How long the sweep actually still ran (seconds).
    actual_s: float

    @property
    def error(self) -> float | None:
        """(forecast median - actual) / actual: + late, - early; None without a forecast."""
        if self.p50_s is None:
            return None
        return (self.p50_s - self.actual_s) / max(self.actual_s, 1e-9)

    @property
    def covered(self) -> bool | None:
        """Whether the 80% interval holds the truth (None without a forecast)."""
        if self.p10_s is None or self.p90_s is None:
            return None
        return self.p10_s <= self.actual_s <= self.p90_s

    def to_dict(self) -> dict[str, Any]:
        """One entry of ``points`` in ``sweep replay --forecast --json``."""
        return {**asdict(self), "error": self.error, "covered": self.covered}


@dataclass(frozen=True)
class ForecastReplay:
    """A recorded sweep's forecasts at :data:`PROGRESS`, against what happened."""

    sweep_id: str
    trials: int
    slots: int
    wall_s: float
    points: tuple[ReplayPoint, ...]

    def to_dict(self) -> dict[str, Any]:
        """``sweep replay --forecast --json``."""
        data = asdict(self)
        data["points"] = [point.to_dict() for point in self.points]
        return data


def replay_forecast(store: RecordStore, sweep_id: str) -> ForecastReplay:
    """Replay the forecast of the recorded sweep ``sweep_id`` (see the module's docstring)."""
    options = saved_sweep(store, sweep_id)["options"]
    rows = forecasting.execution_rows(store)
    ran = sorted(
        (r for r in rows if r["started_at"] is not None and r["ended_at"] is not None),
        key=lambda r: (r["started_at"], r["counter"] or 0),
    )
    own = [r for r in ran if r["sweep_id"] == sweep_id]
    if not own:
        return ForecastReplay(sweep_id, 0, 1, 0.0, ())
    start, end = own[0]["started_at"], max(r["ended_at"] for r in own)
    ends = sorted(r["ended_at"] for r in own)
    slots = options.get("parallel") or forecasting.slots_used(own)
    points = []
    for share in PROGRESS:
        now = ends[max(0, math.ceil(share * len(own)) - 1)]
        known = [r for r in ran if r["ended_at"] <= now]  # earlier sweeps' trials ended by then
        prior = forecasting.prior_trials(known, str(options.get("step")), sweep_id)
        points.append(_point(share, own, now, start, end, slots, options, prior))
    return ForecastReplay(sweep_id, len(own), slots, (end - start) / _US, tuple(points))


def _point(
    share: float,
    own: Sequence[Mapping[str, Any]],
    now: int,
    start: int,
    end: int,
    slots: int,
    options: Mapping[str, Any],
    prior: Sequence[FinishedTrial],
) -> ReplayPoint:
    """The forecast at ``now`` (microseconds) from the rows as they were then."""
    ended = [r for r in own if r["ended_at"] <= now]
    running = [
        RunningTrial(json.loads(r["parameters"] or "{}"), (now - r["started_at"]) / _US)
        for r in own
        if r["started_at"] <= now < r["ended_at"]
    ]
    remaining = len(own) - len(ended) - len(running)
    metrics = options.get("metrics") or []
    made = forecast(
        forecasting.finished_trials(ended, metrics[0] if len(metrics) == 1 else None),
        running,
        remaining,
        slots,
        prior=prior,
    )
    p10, p50, p90 = made.seconds or (None, None, None)
    return ReplayPoint(
        share, (now - start) / _US, len(ended), len(running), remaining, p10, p50, p90,
        (end - now) / _US,
    )  # fmt: skip
