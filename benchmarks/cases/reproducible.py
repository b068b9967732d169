"""The price of reproducible parallel sweeps: slot idle time and wall time against --free-order.

The same seeded TPE sweep of trials of uneven lengths (``uneven.py`` sleeps x * 0.6 s), parallel
2, in the reproducible mode (``--seed``: results told in trial order, trial k asked once trial
k - parallel is told) and with ``--free-order`` (told as they come), in the same invocation
in alternating order. ``slot_idle_s`` is the sweep's own figure (``sweep.json``): how long
freed slots waited for their next trial.
"""

from __future__ import annotations

import statistics

from benchmarks.cases.base import CaseResult, Contender, Goal, Settings, alternate, fmt, summarize

REPRODUCIBLE, FREE = "sweeper (reproducible)", "sweeper --free-order"


def run(settings: Settings) -> CaseResult:
    """Run the reproducible-mode case."""
    trials = 20 if settings.quick else 40
    repetitions = 1 if settings.quick else 3
    case = CaseResult(
        "reproducible",
        f"Reproducible mode: {trials} trials of `sleep x * 0.6 s`, parallel 2, TPE seed 1",
        "The price of `--seed`'s reproducible mode: the same sweep with `--free-order`. "
        "slot idle s: the sweep's `slot_idle_s` (sweep.json), summed over slots. "
        f"Medians of {repetitions} repetition(s) in alternating order.",
    )
    common = ["--step", "uneven", "--trials", str(trials), "--parallel", "2", "--seed", "1"]
    contenders = [
        Contender(REPRODUCIBLE, "sweeper", common),
        Contender(FREE, "sweeper", [*common, "--free-order"]),
    ]
    results = alternate(contenders, repetitions, settings.workdir / "reproducible", case)
    case.rows = [summarize(c.label, results[c.label], trials) for c in contenders]
    for row in case.rows:
        idle = [
            m.report["slot_idle_s"]
            for m in results[row.contender]
            if m.report.get("slot_idle_s") is not None
        ]
        if idle:
            row.extra["slot_idle_s"] = statistics.median(idle)
    rows = {r.contender: r for r in case.rows}
    repro, free = rows[REPRODUCIBLE], rows[FREE]
    if repro.wall_s and free.wall_s:
        repro.vs_sweeper = repro.wall_s / free.wall_s
        case.goals.append(
            Goal(
                "(report) price of the reproducible mode",
                f"slot idle {fmt(repro.extra.get('slot_idle_s'))} s vs "
                f"{fmt(free.extra.get('slot_idle_s'))} s; wall {repro.wall_s:.2f} s vs "
                f"{free.wall_s:.2f} s ({repro.wall_s / free.wall_s:.2f} x), loop "
                f"{fmt(repro.extra.get('loop_s'))} s vs {fmt(free.extra.get('loop_s'))} s",
                None,
            )
        )
    return case
