"""Case 4, scale: many trivial trials with the random sampler; is the per-trial cost flat?"""

from __future__ import annotations

from typing import Any

from benchmarks.cases.base import CaseResult, Contender, Goal, Settings, alternate, fmt, summarize

#: "Flat" means the last 10% cost at most this much more per trial than the first 10%.
FLAT = 1.25


def windows(store_path: str, parallel: int) -> dict[str, Any]:
    """Per-trial wall time in the first and the last 10% of the executions (by created_at).

    ``ms_per_trial`` = span of the window (first created_at to last ended_at) / its size:
    the throughput cost including everything between executions. ``run_ms`` = mean
    created_at -> ended_at of one execution (inside the actor). ``between_ms`` = the part
    of a trial's slot time not spent inside an execution, per slot.
    """
    from sweeper.store import Store

    frame = Store.open(store_path).read_dataset("executions").to_pandas().sort_values("created_at")
    k = max(1, len(frame) // 10)
    out: dict[str, Any] = {"executions": len(frame)}
    for name, window in (("first", frame.head(k)), ("last", frame.tail(k))):
        span = (window["ended_at"].max() - window["created_at"].min()).total_seconds()
        run_ms = (window["ended_at"] - window["created_at"]).dt.total_seconds().mean() * 1000
        per_trial = span / len(window) * 1000
        out[f"{name}_ms_per_trial"] = per_trial
        out[f"{name}_run_ms"] = run_ms
        out[f"{name}_between_ms"] = per_trial * parallel - run_ms
    return out


def run(settings: Settings) -> CaseResult:
    """Run the scale case."""
    trials = 300 if settings.quick else 2000
    case = CaseResult(
        "scale",
        f"4. Scale: {trials} trivial trials, random sampler, parallel 2 (sweeper)",
        "ms/trial in the first and last 10% of executions from the store's created_at/ended_at; "
        "run = inside the actor (created -> ended), between = the rest of a slot's time per trial "
        "(driver, Ray, Optuna). Peak driver memory is the sweeper process alone.",
    )
    args = [
        "--step",
        "trivial",
        "--trials",
        str(trials),
        "--parallel",
        "2",
        "--sampler",
        "random",
        "--seed",
        "1",
    ]
    results = alternate(
        [Contender("sweeper", "sweeper", args)], 1, settings.workdir / "scale", case
    )
    row = summarize("sweeper", results["sweeper"], trials)
    case.rows = [row]
    runs = results["sweeper"]
    if not runs:
        case.goals.append(
            Goal("flat per-trial overhead (last 10% <= 1.25 x first 10%)", "sweeper failed", None)
        )
        return case
    stats = windows(runs[0].report["store"], 2)
    row.extra.update(stats)
    ratio = stats["last_ms_per_trial"] / stats["first_ms_per_trial"]
    row.extra["last_over_first"] = ratio
    case.goals.append(
        Goal(
            f"flat per-trial overhead (last 10% <= {FLAT} x first 10%)",
            f"{fmt(stats['first_ms_per_trial'], 1)} -> {fmt(stats['last_ms_per_trial'], 1)} ms/trial ({ratio:.2f} x); "
            f"peak driver {row.peak_driver_mb:.0f} MB",
            ratio <= FLAT,
        )
    )
    return case
