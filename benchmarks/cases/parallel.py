"""Case 3, parallel efficiency: trials that sleep 1 s, parallel 2; ideal time / measured time."""

from __future__ import annotations

from benchmarks.cases.base import (
    CaseResult,
    Contender,
    Goal,
    Settings,
    alternate,
    fmt,
    memory_goal,
    summarize,
)

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
        "loop is the sweep alone (sweeper's CLI after Ray is up / `Tuner.fit`). "
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
    ]
    results = alternate(contenders, repetitions, settings.workdir / "parallel", case)
    case.rows = [summarize(c.label, results[c.label], trials) for c in contenders]
    for row in case.rows:
        if row.wall_s:
            row.extra["efficiency_end_to_end"] = ideal / row.wall_s
        if row.extra.get("loop_s"):
            row.extra["efficiency_loop"] = ideal / row.extra["loop_s"]
    sweeper = case.rows[0]
    loop_eff = sweeper.extra.get("efficiency_loop")
    e2e = sweeper.extra.get("efficiency_end_to_end")
    case.goals.append(
        Goal(
            f"sweep loop parallel efficiency >= {LOOP_EFFICIENCY}",
            f"{fmt(loop_eff)} loop ({fmt(e2e)} end to end)",
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
