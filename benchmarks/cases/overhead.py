"""Case 1, overhead: N trivial trials, 2 in parallel, TPE; sweeper vs Ray Tune vs Optuna vs a pool."""

from __future__ import annotations

from benchmarks.cases.base import (
    CaseResult,
    Contender,
    Goal,
    Settings,
    add_ratios,
    alternate,
    fmt,
    memory_goal,
    summarize,
)

FLOOR = "process pool (floor)"
#: Issue 13's goals: ms per trial over the floor (loop alone, end to end), ratio to Ray Tune.
LOOP_MS, E2E_MS, TUNE_RATIO = 5, 10, 0.5


def run(settings: Settings) -> CaseResult:
    """Run the overhead case."""
    trials = 60 if settings.quick else 200
    repetitions = 2 if settings.quick else 3
    case = CaseResult(
        "overhead",
        f"1. Overhead: {trials} trivial trials, parallel 2, TPE",
        "Each trial runs `python3 ./trivial.py --x=X` (prints one JSON metric line) through "
        "`/bin/sh -e -c` in the project folder. per-trial over floor = (wall - floor wall) / N. "
        f"Medians of {repetitions} repetitions in alternating order.",
    )
    common = [
        "--step",
        "trivial",
        "--trials",
        str(trials),
        "--parallel",
        "2",
        "--sampler",
        "tpe",
        "--seed",
        "1",
    ]
    contenders = [
        Contender("sweeper", "sweeper", common),
        Contender("ray tune + OptunaSearch", "tune", common),
        Contender("optuna n_jobs=2", "optuna_plain", common),
        Contender(FLOOR, "pool", common),
    ]
    results = alternate(contenders, repetitions, settings.workdir / "overhead", case)
    case.rows = [summarize(c.label, results[c.label], trials) for c in contenders]
    add_ratios(case.rows, FLOOR)
    rows = {r.contender: r for r in case.rows}
    floor, sweeper, tune = rows[FLOOR], rows["sweeper"], rows["ray tune + OptunaSearch"]
    for row in case.rows:
        if row.wall_s is not None and floor.wall_s is not None:
            row.extra["over_floor_ms_per_trial"] = (row.wall_s - floor.wall_s) / trials * 1000
        loop, floor_loop = row.extra.get("loop_s"), floor.extra.get("loop_s")
        if loop is not None and floor_loop is not None:
            row.extra["loop_over_floor_ms_per_trial"] = (loop - floor_loop) / trials * 1000
    over = sweeper.extra.get("over_floor_ms_per_trial")
    loop_over = sweeper.extra.get("loop_over_floor_ms_per_trial")
    case.goals.append(
        Goal(
            f"sweep loop <= {LOOP_MS} ms/trial over the process-pool floor",
            f"{fmt(loop_over, 1)} ms",
            None if loop_over is None else loop_over <= LOOP_MS,
        )
    )
    case.goals.append(
        Goal(
            f"end to end <= {E2E_MS} ms/trial over the floor",
            f"{fmt(over, 1)} ms (Ray start {fmt(sweeper.extra.get('ray_init_s'))} s of it)",
            None if over is None else over <= E2E_MS,
        )
    )
    if sweeper.wall_s is not None and tune.wall_s is not None:
        ratio = sweeper.wall_s / tune.wall_s
        case.goals.append(
            Goal(
                f"end-to-end wall < {TUNE_RATIO} x Ray Tune + OptunaSearch (reuse_actors=True)",
                f"{ratio:.2f} x ({sweeper.wall_s:.1f} s vs {tune.wall_s:.1f} s)",
                ratio < TUNE_RATIO,
            )
        )
    else:
        case.goals.append(
            Goal(f"end-to-end wall < {TUNE_RATIO} x Ray Tune's", "a contender failed", None)
        )
    case.goals.append(memory_goal(case.rows, "sweeper", "ray tune + OptunaSearch"))
    return case
