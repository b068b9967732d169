"""Case 1, overhead: N trivial trials, 2 in parallel, TPE; sweeper (cold, and joining a warm
`sweep up` head) vs Ray Tune vs Optuna vs a pool."""

from __future__ import annotations

from benchmarks.cases.base import (
    CaseResult,
    Contender,
    Goal,
    Row,
    Settings,
    add_ratios,
    alternate,
    fmt,
    memory_goal,
    summarize,
)
from benchmarks.cases.warm_head import warm_head

FLOOR = "process pool (floor)"
WARM = "sweeper (warm `sweep up`)"
OPTUNA = "optuna n_jobs=2"
#: Issue 25's goal: the warm head's sweep by plain Optuna running the same subprocesses.
WARM_RATIO = 1.2
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
    with warm_head() as home:
        contenders = [
            Contender("sweeper", "sweeper", common),
            Contender(WARM, "sweeper", [*common, "--warm-home", str(home)]),
            Contender("ray tune + OptunaSearch", "tune", common),
            Contender(OPTUNA, "optuna_plain", common),
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
    case.goals.append(_warm_goal(rows))
    case.goals.append(memory_goal(case.rows, "sweeper", "ray tune + OptunaSearch"))
    return case


def _warm_goal(rows: dict[str, Row]) -> Goal:
    """Issue 25: with the warm head of `sweep up`, end to end by plain Optuna's n_jobs=2."""
    warm, cold, optuna = rows[WARM], rows["sweeper"], rows[OPTUNA]
    if warm.wall_s is None or optuna.wall_s is None:
        return Goal(f"warm sweeper <= {WARM_RATIO} x Optuna n_jobs=2", "a contender failed", None)
    ratio = warm.wall_s / optuna.wall_s
    cold_text = f"cold {cold.wall_s / optuna.wall_s:.2f} x" if cold.wall_s else "cold failed"
    return Goal(
        f"end to end with the warm `sweep up` head <= {WARM_RATIO} x Optuna n_jobs=2",
        f"{ratio:.2f} x ({warm.wall_s:.1f} s vs {optuna.wall_s:.1f} s; {cold_text})",
        ratio <= WARM_RATIO,
    )
