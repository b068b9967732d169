"""The forecast's input values: finished and running trials; durations as text."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FinishedTrial:
    """A trial that ended: its parameters, run time, status and what it used (None: unknown)."""

    params: Mapping[str, Any]
    duration_s: float
    status: str = "complete"
    cpu_s: float | None = None
    gpu_s: float | None = None
    #: The objective's value (complete trials of a ranked sweep), for a target.
    value: float | None = None
    #: When it started and ended, seconds since the epoch (None: unknown), for the time a
    #: slot takes between one trial's end and the next one's start.
    span: tuple[float, float] | None = None


@dataclass(frozen=True)
class RunningTrial:
    """A trial in flight: its parameters and how long it has run."""

    params: Mapping[str, Any]
    elapsed_s: float


def format_seconds(seconds: float) -> str:
    """``4m10s``, ``2h05m``, ``45s``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
