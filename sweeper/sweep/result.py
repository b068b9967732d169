"""How a sweep ended (or stands), as values: :class:`SweepResult`, its trials and its warm start.

``to_dict()`` is the summary ``sweep --json`` prints; everything else reads the fields. No
Optuna here: ``sweep status`` and the API's users import these without the sweep engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sweeper.forecast import Forecast
from sweeper.status import Status
from sweeper.sweep.failures import FailureGroup


@dataclass(frozen=True)
class TrialSummary:
    """One trial of a sweep's result: its execution, objective value(s) and parameters."""

    execution_id: str | None
    trial_number: int
    value: float | None
    values: Mapping[str, float]
    parameters: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The ``best`` entry of the ``sweep --json`` summary."""
        return {
            "execution_id": self.execution_id,
            "trial_number": self.trial_number,
            "value": self.value,
            "values": dict(self.values),
            "parameters": dict(self.parameters),
        }


@dataclass(frozen=True)
class WarmStart:
    """What a warm start added: the sweeps it read, trials added, and why others did not fit."""

    sweeps: tuple[str, ...] = ()
    added: int = 0
    skipped: Mapping[str, int] = field(default_factory=dict)

    @property
    def not_fitting(self) -> int:
        """How many complete executions of those sweeps were left out."""
        return sum(self.skipped.values())

    def to_dict(self) -> dict[str, Any]:
        """The ``warm_start`` entry of the ``sweep --json`` summary (and of ``sweep.json``)."""
        return {
            "sweeps": list(self.sweeps),
            "added": self.added,
            "not_fitting": self.not_fitting,
            "reasons": dict(self.skipped),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WarmStart:
        """From :meth:`to_dict` (saved in ``sweep.json``)."""
        return cls(
            tuple(data.get("sweeps") or ()),
            int(data.get("added") or 0),
            dict(data.get("reasons") or {}),
        )

    def describe(self) -> str:
        """One line for the end of a sweep and ``sweep status``."""
        sweeps = f"{len(self.sweeps)} earlier sweep{'s' if len(self.sweeps) != 1 else ''}"
        line = f"warm start: {self.added} trials added from {sweeps}"
        if self.skipped:
            reasons = ", ".join(f"{count} x {why}" for why, count in self.skipped.items())
            line += f"; {self.not_fitting} did not fit ({reasons})"
        return line


@dataclass(frozen=True)
class ResourceTotals:
    """What a sweep's executions used together: CPU- and GPU-seconds summed, the largest peak
    memory of one execution, and how many executions had figures (``measured``; executions
    recorded before figures existed, and those answered from the store, have none).

    >>> rows = [{"cpu_s": 1.5, "gpu_s": 0.0, "peak_memory_mb": 210.0}, {"cpu_s": None}]
    >>> ResourceTotals.of(rows).to_dict()
    {'cpu_s': 1.5, 'gpu_s': 0.0, 'peak_memory_mb_max': 210.0, 'measured': 1}
    """

    cpu_s: float = 0.0
    gpu_s: float = 0.0
    peak_memory_mb_max: float | None = None
    measured: int = 0

    @classmethod
    def of(cls, rows: Iterable[Mapping[str, Any]]) -> ResourceTotals:
        """The totals of executions rows (or record ``usage`` mappings): ``cpu_s``,
        ``gpu_s``, ``peak_memory_mb``, each None where unknown."""
        cpu = gpu = 0.0
        peaks: list[float] = []
        measured = 0
        for row in rows:
            figures = [row.get(name) for name in ("cpu_s", "gpu_s", "peak_memory_mb")]
            if all(value is None for value in figures):
                continue
            measured += 1
            cpu += figures[0] or 0.0
            gpu += figures[1] or 0.0
            if figures[2] is not None:
                peaks.append(figures[2])
        return cls(round(cpu, 3), round(gpu, 3), max(peaks, default=None), measured)

    def to_dict(self) -> dict[str, Any]:
        """The ``resources`` entry of the ``sweep --json`` and ``sweep status --json`` summaries."""
        return asdict(self)

    def describe(self) -> str:
        """One line for the end of a sweep and ``sweep status``."""
        if not self.measured:
            return "resources: not measured"
        peak = self.peak_memory_mb_max
        memory = f", peak memory {peak:.1f} MB" if peak is not None else ""
        return (
            f"resources: cpu {self.cpu_s:.2f} s, gpu {self.gpu_s:.2f} s{memory} "
            f"({self.measured} executions)"
        )


@dataclass(frozen=True)
class SweepResult:
    """How a sweep ended: ``to_dict()`` is the summary ``sweep --json`` prints.

    ``best`` is the best trial (one metric), the Pareto front (several metrics) or None (no
    metric, or no trial completed). ``failures`` group the failed trials by class and
    reason, ``failure_classes`` count them by class (oom, time_limit, user_error,
    infrastructure). ``reused`` counts the trials answered from the store (``reuse``);
    ``warm_start`` says what a warm start added and why the rest did not fit. ``failure``
    says why the sweep failed, when it did (too many failed trials, none completed), and
    ``complete`` holds the sweep's own complete trials in trial order; neither is part of
    the summary. ``trials_asked`` (``sweep status``) is, when set. ``resources`` sums what
    the sweep's executions used.
    """

    sweep_id: str
    status: Status
    counts: Mapping[str, int]
    best: TrialSummary | tuple[TrialSummary, ...] | None
    failures: tuple[FailureGroup, ...] = ()
    failure: str | None = None
    failure_classes: Mapping[str, int] = field(default_factory=dict)
    reused: int = 0
    warm_start: WarmStart | None = None
    complete: tuple[TrialSummary, ...] = ()
    trials_asked: int | None = None
    resources: ResourceTotals = field(default_factory=ResourceTotals)
    #: When the rest is expected to finish, and its budget (limits, spent, why it stopped).
    forecast: Forecast | None = None
    budget: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``sweep --json`` summary (``sweep status --json`` adds ``trials_asked``)."""
        best: Any = self.best
        if isinstance(best, TrialSummary):
            best = best.to_dict()
        elif isinstance(best, tuple):
            best = [trial.to_dict() for trial in best]
        summary: dict[str, Any] = {
            "sweep_id": self.sweep_id,
            "trials": dict(self.counts),
            "best": best,
            "failures": [group.to_dict() for group in self.failures],
            "failure_classes": dict(self.failure_classes),
            "reused": self.reused,
            "status": str(self.status),
            "resources": self.resources.to_dict(),
        }
        if self.trials_asked is not None:
            summary["trials_asked"] = self.trials_asked
        if self.warm_start is not None:
            summary["warm_start"] = self.warm_start.to_dict()
        if self.forecast is not None:
            summary["forecast"] = self.forecast.to_dict()
        if self.budget is not None:
            summary["budget"] = dict(self.budget)
        return summary
