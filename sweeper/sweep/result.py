"""How a sweep ended (or stands), as values: :class:`SweepResult`, its trials and its warm start.

``to_dict()`` is the summary ``sweep --json`` prints; everything else reads the fields. No
Optuna here: ``sweep status`` and the API's users import these without the sweep engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
class SweepResult:
    """How a sweep ended: ``to_dict()`` is the summary ``sweep --json`` prints.

    ``best`` is the best trial (one metric), the Pareto front (several metrics) or None (no
    metric, or no trial completed). ``failures`` group the failed trials by class and
    reason, ``failure_classes`` count them by class (oom, time_limit, user_error,
    infrastructure). ``reused`` counts the trials answered from the store (``reuse``);
    ``warm_start`` says what a warm start added and why the rest did not fit. ``failure``
    says why the sweep failed, when it did (too many failed trials, none completed), and
    ``complete`` holds the sweep's own complete trials in trial order; neither is part of
    the summary. ``trials_asked`` (``sweep status``) is, when set.
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
        }
        if self.trials_asked is not None:
            summary["trials_asked"] = self.trials_asked
        if self.warm_start is not None:
            summary["warm_start"] = self.warm_start.to_dict()
        return summary
