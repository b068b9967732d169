"""Forecasts of a sweep: when it will finish, what it will use, whether it reaches a target.

Pure: typed values in (finished and running trials, trials still to ask, slots), a frozen
:class:`Forecast` out; no Ray, no Optuna, no store. :mod:`sweeper.sweep.forecasting` reads a
sweep's records into these values (docs/forecast.md).
"""

from sweeper.forecast.model import DurationModel
from sweeper.forecast.simulate import (
    FinishedTrial,
    Forecast,
    RunningTrial,
    forecast,
    format_seconds,
)
from sweeper.forecast.target import TargetChance

__all__ = [
    "DurationModel",
    "FinishedTrial",
    "Forecast",
    "RunningTrial",
    "TargetChance",
    "forecast",
    "format_seconds",
]
