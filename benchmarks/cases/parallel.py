"""Case 3, parallel efficiency: trials that sleep 1 s, parallel 2; ideal time / measured time.

The goals are relative to the ideal (trials x 1 s / 2). Each trial is ``python3 ./sleep.py``,
whose Python start (30-40 ms) no engine can avoid, so the process-pool floor runs next to
sweeper and Ray Tune: its efficiency is the most any contender could reach on the machine.
"""

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
#: Issue 13's goals: loop efficiency, and end to end within ideal + Ray start + this slack.
LOOP_EFFICIENCY, SLACK_S = 0.97, 0.5


def run(settings: Settings) -> CaseResult:
    """Run the parallel-efficiency case."""
    trials = 10 if settings.quick else 40
    repetitions = 1 if settings.quick else 2
    ideal = trials * 1.0 / 2
    case = CaseResult(
        "parallel",
        f"3. Parallel efficiency: {trials} trials of `sleep 1 s`, parallel 2 (ideal {ideal:.0f} s)",
        "efficiency = ideal / measured. End to end includes Python start, Ray start and stop; "
        "loop is the sweep alone (sweeper's CLI after Ray is up / `Tuner.fit` / the pool's "
        "map). The process pool is the floor: the same trial command in 2 threads, its "
        "efficiency the most the machine allows (each trial pays a Python start). "
        f"Medians of {repetitions} repetition(s) in alternating order.",
    )
    common = [
        "--step",
        "sleep",
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
        Contender(FLOOR, "pool", common),
    ]
    results = alternate(contenders, repetitions, settings.workdir / "parallel", case)
    case.rows = [summarize(c.label, results[c.label], trials) for c in contenders]
    add_ratios(case.rows, FLOOR)
    for row in case.rows:
        if row.wall_s:
            row.extra["efficiency_end_to_end"] = ideal / row.wall_s
        if row.extra.get("loop_s"):
            row.extra["efficiency_loop"] = ideal / row.extra["loop_s"]
    rows = {r.contender: r for r in case.rows}
    sweeper, floor = rows["sweeper"], rows[FLOOR]
    loop_eff = sweeper.extra.get("efficiency_loop")
    e2e = sweeper.extra.get("efficiency_end_to_end")
    case.goals.append(
        Goal(
            f"sweep loop parallel efficiency >= {LOOP_EFFICIENCY}",
            f"{fmt(loop_eff)} loop ({fmt(e2e)} end to end); the process-pool floor "
            f"{fmt(floor.extra.get('efficiency_loop'))} loop",
            None if loop_eff is None else loop_eff >= LOOP_EFFICIENCY,
        )
    )
    ray_start = sweeper.extra.get("ray_init_s")
    if sweeper.wall_s is not None and ray_start is not None:
        limit = ideal + ray_start + SLACK_S
        case.goals.append(
            Goal(
                f"end to end <= ideal + Ray start + {SLACK_S} s",
                f"{sweeper.wall_s:.2f} s vs {ideal:.0f} + {ray_start:.2f} + {SLACK_S} = {limit:.2f} s",
                sweeper.wall_s <= limit,
            )
        )
    case.goals.append(memory_goal(case.rows, "sweeper", "ray tune + OptunaSearch"))
    return case
