"""Case 2, containers: N trivial trials in Docker; sweeper --runtime docker vs a docker-run loop."""

from __future__ import annotations

from benchmarks.cases.base import (
    CaseResult,
    Contender,
    Goal,
    Settings,
    add_ratios,
    alternate,
    memory_goal,
    summarize,
)

FLOOR = "docker run --rm loop (2 threads)"


def run(settings: Settings) -> CaseResult:
    """Run the containers case."""
    trials = 10 if settings.quick else 50
    repetitions = 1 if settings.quick else 2
    case = CaseResult(
        "containers",
        f"2. Containers: {trials} trivial trials in `sweeper-test/python:latest`, parallel 2",
        "sweeper `--runtime docker` vs `containers.run(..., remove=True)` of the same "
        "`/bin/sh -e -c` line with the project mounted, in a 2-thread pool. Memory is the "
        "contender's process tree only (containers belong to the Docker daemon). "
        f"Medians of {repetitions} repetitions in alternating order.",
    )
    common = [
        "--step",
        "trivial",
        "--trials",
        str(trials),
        "--parallel",
        "2",
        "--runtime",
        "docker",
        "--seed",
        "1",
    ]
    contenders = [
        Contender("sweeper --runtime docker", "sweeper", [*common, "--sampler", "tpe"]),
        Contender(FLOOR, "pool", common),
    ]
    results = alternate(contenders, repetitions, settings.workdir / "containers", case)
    case.rows = [summarize(c.label, results[c.label], trials) for c in contenders]
    add_ratios(case.rows, FLOOR, "sweeper --runtime docker")
    sweeper, floor = case.rows
    if sweeper.wall_s is not None and floor.wall_s is not None:
        ratio = sweeper.wall_s / floor.wall_s
        loop = sweeper.extra.get("loop_s")
        loop_ratio = loop / floor.extra["loop_s"] if loop and floor.extra.get("loop_s") else None
        measured = f"{ratio:.2f} x end to end" + (
            f"; {loop_ratio:.2f} x sweep loop only" if loop_ratio else ""
        )
        case.goals.append(
            Goal("sweeper <= 1.15 x the plain docker run loop", measured, ratio <= 1.15)
        )
    else:
        case.goals.append(
            Goal("sweeper <= 1.15 x the plain docker run loop", "a contender failed", None)
        )
    case.goals.append(memory_goal(case.rows, "sweeper --runtime docker"))
    return case
