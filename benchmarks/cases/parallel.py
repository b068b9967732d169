"""Case 3, parallel efficiency: trials that sleep 1 s, parallel 2; ideal time / measured time."""

from __future__ import annotations

from benchmarks.cases.base import CaseResult, Contender, Goal, Settings, alternate, fmt, summarize


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
            "sweeper parallel efficiency >= 0.95 (sweep loop)",
            f"{fmt(loop_eff)} loop, {fmt(e2e)} end to end",
            None if loop_eff is None else loop_eff >= 0.95,
        )
    )
    return case
