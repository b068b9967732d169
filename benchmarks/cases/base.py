"""What every case shares: settings, result rows, goals, and alternating repetitions."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.measure import Measurement, run_contender

#: How many times a failed contender run is retried.
RETRIES = 1


@dataclass
class Settings:
    """How the cases run: quick or full, and where contenders keep their files."""

    quick: bool
    workdir: Path


@dataclass
class Goal:
    """One goal of the issue: what is asked, what was measured, whether it was met."""

    goal: str
    measured: str
    met: bool | None


@dataclass
class Row:
    """One contender's line in a case table (medians over its repetitions)."""

    contender: str
    wall_s: float | None
    per_trial_ms: float | None
    peak_tree_mb: float | None
    peak_driver_mb: float | None
    vs_floor: float | None = None
    vs_sweeper: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class CaseResult:
    """A finished case: its table rows, goals and notes."""

    name: str
    title: str
    description: str
    rows: list[Row] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


@dataclass
class Contender:
    """A contender of a case: its label, its module and its arguments."""

    label: str
    module: str
    args: list[str]


def alternate(
    contenders: list[Contender], repetitions: int, workdir: Path, case: CaseResult
) -> dict[str, list[Measurement]]:
    """Run every contender ``repetitions`` times, alternating the order (ABC, CBA, ABC...).

    Every run gets a fresh folder. A failed run (e.g. Ray timing out at start-up on a loaded
    machine) is noted in the case, left out, and retried ``RETRIES`` times.
    """
    results: dict[str, list[Measurement]] = {c.label: [] for c in contenders}
    for rep in range(repetitions):
        order = contenders if rep % 2 == 0 else list(reversed(contenders))
        for contender in order:
            for attempt in range(1 + RETRIES):
                folder = workdir / f"{contender.label}-{rep}-{attempt}".replace(" ", "_")
                measurement = run_contender(
                    contender.module,
                    [*contender.args, "--workdir", str(folder)],
                    folder,
                    label=contender.label.replace(" ", "_"),
                )
                case.runs.append({"repetition": rep, "attempt": attempt, **measurement.to_dict()})
                if measurement.ok:
                    results[contender.label].append(measurement)
                    break
                case.notes.append(
                    f"{contender.label} failed (repetition {rep}, attempt {attempt}, exit "
                    f"{measurement.returncode}): "
                    + (measurement.stderr_tail.strip().splitlines() or ["no stderr"])[-1]
                )
    return results


def median(values: list[float]) -> float | None:
    """The median, or None for no values."""
    return statistics.median(values) if values else None


def summarize(label: str, runs: list[Measurement], trials: int) -> Row:
    """A row of medians over one contender's runs (report extras: medians of numbers)."""
    if not runs:
        return Row(label, None, None, None, None, extra={"failed": True})
    wall = statistics.median(m.wall_s for m in runs)
    extra: dict[str, Any] = {}
    for key in ("ray_init_s", "loop_s", "best"):
        values = [m.report[key] for m in runs if isinstance(m.report.get(key), (int, float))]
        if values:
            extra[key] = statistics.median(values)
    extra["repetitions"] = len(runs)
    extra["trials_done"] = min(int(m.report.get("trials", 0)) for m in runs)
    return Row(
        contender=label,
        wall_s=wall,
        per_trial_ms=wall / trials * 1000 if trials else None,
        peak_tree_mb=max(m.peak_tree_mb for m in runs),
        peak_driver_mb=max(m.peak_driver_mb for m in runs),
        extra=extra,
    )


def add_ratios(rows: list[Row], floor: str | None, sweeper: str | None = "sweeper") -> None:
    """Fill ``vs_floor`` and ``vs_sweeper`` (wall time ratios) of every row."""
    by_label = {r.contender: r for r in rows}
    for row in rows:
        if row.wall_s is None:
            continue
        for attr, ref in (("vs_floor", floor), ("vs_sweeper", sweeper)):
            other = by_label.get(ref) if ref else None
            if other is not None and other.wall_s:
                setattr(row, attr, row.wall_s / other.wall_s)


def fmt(value: float | None, digits: int = 2) -> str:
    """A number for the tables ("-" for None)."""
    return "-" if value is None else f"{value:.{digits}f}"


def memory_goal(rows: list[Row], sweeper: str, tune: str | None = None) -> Goal:
    """Goal 6 of issue 13: peak RSS of the driver and of the whole process tree, by Ray Tune's."""
    by_label = {r.contender: r for r in rows}

    def peaks(label: str | None) -> str | None:
        row = by_label.get(label) if label else None
        if row is None or row.peak_driver_mb is None:
            return None
        return f"driver {row.peak_driver_mb:.0f} MB / tree {fmt(row.peak_tree_mb, 0)} MB"

    measured = f"sweeper {peaks(sweeper) or 'failed'}"
    if tune is not None:
        measured += f"; Ray Tune {peaks(tune) or 'failed'}"
    else:
        measured += " (no Ray Tune contender in this case: see the overhead case)"
    return Goal("(report) peak RSS of the driver and the process tree", measured, None)
