"""The forecast judged on recorded sweeps (issue 27): time-to-finish error, interval coverage, budget.

Three sweeps are recorded (real processes on a real Ray, each in a fresh copy of its project):
the benchmark's ``sleep`` step at 1 s a trial, the same step whose duration is its
``seconds`` parameter (0.3-3 s), and the bundled example's ``train-model`` (configs/, few
epochs). Each is replayed with :func:`sweeper.sweep.forecasting_replay.replay_forecast`
(what ``sweep replay SWEEP --forecast`` prints): at 10/25/50% of its trials ended, the
forecast from what was known then against the time the sweep actually still ran. A fourth
sweep has a wall ``--budget``: how far it ran past it, in trial durations.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.cases.base import CaseResult, Goal, Row, Settings
from benchmarks.paths import PROJECT, REPO, benchmark_env

EXAMPLE = REPO / "configs"
#: label -> (project, sweep arguments); trials and parallel are added per mode.
SWEEPS: dict[str, tuple[Path, list[str]]] = {
    "sleep 1 s": (PROJECT, ["sleep", "-p", "seconds=1", "-p", "x=float:0..1"]),
    "sleep by parameter": (PROJECT, ["sleep", "-p", "seconds=float:0.3..3", "-p", "x=0.5"]),
    "train-model (example)": (EXAMPLE, ["train-model", "-p", "epochs=int:1..6"]),
}
BUDGET_S = 10.0
GOAL_25, GOAL_50, GOAL_COVERAGE, GOAL_OVERRUN = 0.20, 0.10, 0.70, 1.0


def run(settings: Settings) -> CaseResult:
    """Record the sweeps, replay their forecasts, run the budgeted sweep."""
    trials = 12 if settings.quick else 30
    case = CaseResult(
        "forecast",
        f"Forecast: time to finish on {len(SWEEPS)} recorded sweeps of {trials} trials, "
        "parallel 2, and a budgeted sweep",
        "Each sweep replayed (`sweep replay --forecast`): the forecast median and 80% interval "
        "of the time to finish at 10/25/50% of its trials ended, from what was known then, "
        "against the time it still ran. error = (forecast - actual) / actual.",
    )
    points: dict[str, list[dict[str, Any]]] = {}
    for label, (project, args) in SWEEPS.items():
        folder = _copy(project, settings.workdir / "forecast" / label.replace(" ", "_"))
        sweep_args = [*args, "--trials", str(trials), "--parallel", "2"]
        summary, wall = _sweep(folder, sweep_args, case)
        if summary is None:
            continue
        replay = _replay(folder, summary["sweep_id"])
        points[label] = replay["points"]
        case.rows.append(Row(label, wall, wall / trials * 1000, None, None, extra={
            "trials_done": replay["trials"]}))  # fmt: skip
        case.notes.append(f"{label}: " + "; ".join(_point_text(p) for p in replay["points"]))
    _error_goals(case, points)
    _budget_goal(case, settings)
    return case


def _copy(project: Path, folder: Path) -> Path:
    """A fresh copy of ``project`` (its store left out) in ``folder``."""
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(project, folder, ignore=shutil.ignore_patterns(".sweeper", "__pycache__"))
    return folder


def _sweep(folder: Path, args: list[str], case: CaseResult) -> tuple[dict[str, Any] | None, float]:
    """Run ``sweep ARGS --json`` in ``folder``: its summary (None: failed, noted) and wall s."""
    command = [sys.executable, "-m", "sweeper.cli.main", *args]
    command += ["--runtime", "local", "--sampler", "random", "--seed", "1", "--json"]
    started = time.perf_counter()
    proc = subprocess.run(
        command, cwd=folder, env=benchmark_env(), capture_output=True, text=True, timeout=1800
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no stderr"])[-1]
        case.notes.append(f"sweep {' '.join(args)} failed (exit {proc.returncode}): {tail}")
        return None, wall
    return json.loads(proc.stdout), wall


def _replay(folder: Path, sweep_id: str) -> dict[str, Any]:
    """The sweep's forecast replay, as ``sweep replay --forecast --json`` gives it."""
    from sweeper.store import Store
    from sweeper.sweep.forecasting_replay import replay_forecast

    return replay_forecast(Store.open(folder / ".sweeper"), sweep_id).to_dict()


def _point_text(point: dict[str, Any]) -> str:
    if point["p50_s"] is None:
        return f"{point['progress']:.0%}: no forecast"
    return (
        f"{point['progress']:.0%}: {point['p50_s']:.1f} s ({point['p10_s']:.1f}-"
        f"{point['p90_s']:.1f}) vs {point['actual_s']:.1f} s, {point['error']:+.0%}"
    )


def _error_goals(case: CaseResult, points: dict[str, list[dict[str, Any]]]) -> None:
    """Median absolute error at 25% and 50%, and the 80% interval's coverage, over sweeps."""
    for share, goal in ((0.25, GOAL_25), (0.50, GOAL_50)):
        errors = [
            abs(p["error"])
            for sweep in points.values()
            for p in sweep
            if p["progress"] == share and p["error"] is not None
        ]
        measured = statistics.median(errors) if errors else None
        case.goals.append(
            Goal(
                f"median |error| of time-to-finish at {share:.0%} progress <= {goal:.0%}",
                "no sweep recorded"
                if measured is None
                else f"{measured:.1%} over {len(errors)} sweeps ("
                + ", ".join(f"{e:.0%}" for e in errors)
                + ")",
                None if measured is None else measured <= goal,
            )
        )
    covered = [p["covered"] for s in points.values() for p in s if p["covered"] is not None]
    share = sum(covered) / len(covered) if covered else None
    case.goals.append(
        Goal(
            f"80% interval holds the truth in >= {GOAL_COVERAGE:.0%} of cases",
            "no sweep recorded"
            if share is None
            else f"{share:.0%} ({sum(covered)} of {len(covered)}: 10/25/50% of each sweep)",
            None if share is None else share >= GOAL_COVERAGE,
        )
    )


def _budget_goal(case: CaseResult, settings: Settings) -> None:
    """A 1 s-a-trial sweep with a wall budget: how far past it, in trial durations."""
    folder = _copy(PROJECT, settings.workdir / "forecast" / "budget")
    args = ["sleep", "-p", "seconds=1", "-p", "x=float:0..1", "--trials", "100"]
    args += ["--parallel", "1", "--budget", f"{BUDGET_S:g}s"]
    summary, wall = _sweep(folder, args, case)
    if summary is None:
        case.goals.append(Goal("budgeted sweep overruns <= 1 trial", "sweep failed", False))
        return
    spent = summary["budget"]["spent"]["wall_s"]
    from sweeper.store import Store
    from sweeper.sweep import forecasting

    rows = forecasting.execution_rows(Store.open(folder / ".sweeper"))
    durations = [r["duration_s"] for r in rows if r["duration_s"] is not None]
    trial_s = statistics.median(durations)
    overrun = max(0.0, spent - BUDGET_S) / trial_s
    done = summary["trials"]["complete"]
    case.rows.append(Row(f"budget {BUDGET_S:g} s", wall, None, None, None, extra={
        "trials_done": done}))  # fmt: skip
    case.goals.append(
        Goal(
            f"a budgeted sweep overruns its wall budget by <= {GOAL_OVERRUN:g} trial",
            f"{overrun:.2f} trials (spent {spent:.1f} s of {BUDGET_S:g} s, {done} trials of "
            f"{trial_s:.2f} s; {summary['budget']['stopped']})",
            overrun <= GOAL_OVERRUN,
        )
    )
