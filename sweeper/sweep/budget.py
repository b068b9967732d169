"""A sweep's budget (``--budget``, ``--budget-cpu-hours``, ``--budget-gpu-hours``) and what is spent.

The sweep asks no more trials once finishing what is in flight plus one more trial would,
by the forecast (:mod:`sweeper.forecast`), go beyond any of its budgets: so it ends within
about one trial's duration of the wall budget. What a sweep spent is kept in ``sweep.json``
across resumes; ``sweep resume --budget ...`` gives it a new (larger) budget.

>>> Budget(wall_s=600).describe(Spent(wall_s=120.0, cpu_s=7200.0))
'budget: 2m00s of 10m00s'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sweeper.errors import SweeperError
from sweeper.forecast import Forecast, format_seconds


@dataclass(frozen=True)
class Spent:
    """What a sweep has used so far: wall seconds (all its runs), CPU- and GPU-seconds."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    gpu_s: float = 0.0

    def to_dict(self) -> dict[str, float]:
        """As ``sweep.json`` keeps it."""
        return {name: round(value, 3) for name, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Spent:
        """From :meth:`to_dict` (nothing spent when absent)."""
        data = data or {}
        return cls(*(float(data.get(name) or 0.0) for name in ("wall_s", "cpu_s", "gpu_s")))


@dataclass(frozen=True)
class Budget:
    """The limits a sweep was given (None: no limit of that kind)."""

    wall_s: float | None = None
    cpu_hours: float | None = None
    gpu_hours: float | None = None

    @classmethod
    def of(cls, limits: Mapping[str, Any] | None) -> Budget:
        """From a sweep's ``budget`` option (or :meth:`to_dict`): ``wall_s``, ``cpu_hours``,
        ``gpu_hours``, each absent or None for no limit."""
        limits = limits or {}
        budget = cls(*(limits.get(name) for name in ("wall_s", "cpu_hours", "gpu_hours")))
        budget.check()
        return budget

    def check(self) -> None:
        """A :class:`SweeperError` for a limit that is not a positive number."""
        for flag, value in (
            ("--budget", self.wall_s),
            ("--budget-cpu-hours", self.cpu_hours),
            ("--budget-gpu-hours", self.gpu_hours),
        ):
            if value is not None and not value > 0:
                raise SweeperError(f"{flag} must be more than 0, not {value:g}")

    @property
    def any(self) -> bool:
        """Whether any limit is set."""
        return any(v is not None for v in (self.wall_s, self.cpu_hours, self.gpu_hours))

    def exceeded_by(self, spent: Spent, next_one: Forecast) -> str | None:
        """Why one more trial would go beyond the budget, or None when it fits.

        ``next_one`` forecasts the trials in flight plus one more: its median time to finish,
        and the CPU-/GPU-hours they use from now on.
        """
        ahead = (next_one.seconds_p50 or 0.0) if next_one.known else 0.0
        # Nothing finished yet: no forecast, but a budget already spent (a slow start) is spent.
        if self.wall_s is not None and spent.wall_s + ahead > self.wall_s:
            return f"the wall budget {format_seconds(self.wall_s)} would be exceeded"
        if not next_one.known:
            return None  # only a trial that ends tells what the next one costs
        cpu = spent.cpu_s / 3600 + (next_one.cpu_hours or 0.0)
        if self.cpu_hours is not None and cpu > self.cpu_hours:
            return f"the CPU budget {self.cpu_hours:g} CPU-hours would be exceeded"
        gpu = spent.gpu_s / 3600 + (next_one.gpu_hours or 0.0)
        if self.gpu_hours is not None and gpu > self.gpu_hours:
            return f"the GPU budget {self.gpu_hours:g} GPU-hours would be exceeded"
        return None

    def to_dict(self, spent: Spent, stopped: str | None = None) -> dict[str, Any]:
        """The ``budget`` entry of the summaries: limits, what is spent, why it stopped."""
        return {
            "wall_s": self.wall_s,
            "cpu_hours": self.cpu_hours,
            "gpu_hours": self.gpu_hours,
            "spent": spent.to_dict(),
            "stopped": stopped,
        }

    def describe(self, spent: Spent) -> str:
        """One line: spent against each limit."""
        parts = []
        if self.wall_s is not None:
            parts.append(f"{format_seconds(spent.wall_s)} of {format_seconds(self.wall_s)}")
        if self.cpu_hours is not None:
            parts.append(f"{spent.cpu_s / 3600:.3f} of {self.cpu_hours:g} CPU-hours")
        if self.gpu_hours is not None:
            parts.append(f"{spent.gpu_s / 3600:.3f} of {self.gpu_hours:g} GPU-hours")
        return "budget: " + ", ".join(parts)
