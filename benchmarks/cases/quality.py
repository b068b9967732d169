"""Case 5, search quality at equal budget: SVC on sklearn's digits, TPE vs Tune's TPE vs random."""

from __future__ import annotations

import statistics

from benchmarks.cases.base import (
    CaseResult,
    Contender,
    Settings,
    alternate,
    memory_goal,
    summarize,
)


def run(settings: Settings) -> CaseResult:
    """Run the search-quality case."""
    trials = 15 if settings.quick else 40
    seeds = 2 if settings.quick else 5
    case = CaseResult(
        "quality",
        f"5. Search quality: {trials} trials x {seeds} seeds of an RBF SVC on digits (C, gamma log-uniform)",
        "Validation accuracy (maximize), parallel 2. `best` = median over seeds of the best "
        "accuracy; wall = median per seed. The contender order rotates with the seed.",
    )
    base = [
        "--step",
        "digits",
        "--trials",
        str(trials),
        "--parallel",
        "2",
        "--metric",
        "accuracy",
        "--direction",
        "maximize",
    ]
    labels = [
        ("sweeper tpe", "sweeper", "tpe"),
        ("ray tune + OptunaSearch (tpe)", "tune", "tpe"),
        ("sweeper random", "sweeper", "random"),
    ]
    runs: dict[str, list] = {label: [] for label, _, _ in labels}
    for seed in range(seeds):
        rotated = labels[seed % len(labels) :] + labels[: seed % len(labels)]
        contenders = [
            Contender(label, module, [*base, "--sampler", sampler, "--seed", str(seed)])
            for label, module, sampler in rotated
        ]
        for label, measured in alternate(
            contenders, 1, settings.workdir / "quality" / f"seed{seed}", case
        ).items():
            runs[label].extend(measured)
    for label, _, _ in labels:
        row = summarize(label, runs[label], trials)
        bests = [
            m.report["best"] for m in runs[label] if isinstance(m.report.get("best"), (int, float))
        ]
        row.extra["best_per_seed"] = [round(b, 4) for b in bests]
        if bests:
            row.extra["best"] = statistics.median(bests)
        case.rows.append(row)
    case.goals.append(memory_goal(case.rows, labels[0][0], labels[1][0]))
    return case
