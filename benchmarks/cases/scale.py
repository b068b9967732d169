"""Case 4, scale: many trivial trials in one sweep; flat cost, memory, queries, slot idle time."""

from __future__ import annotations

from typing import Any

from benchmarks.cases.base import (
    CaseResult,
    Contender,
    Goal,
    Row,
    Settings,
    alternate,
    fmt,
    memory_goal,
    summarize,
)

#: "Flat" means the last 10% cost at most this much more per trial than the first 10%.
FLAT = 1.1
#: The driver's peak memory at the end of the big sweep stays under this.
DRIVER_MB = 500
#: `sweep ls --sort -metric.loss --limit 10` and `results.best()` over the store, without
#: a manual `sweep compact`, each answer within this.
QUERY_S = 0.3


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


def _args(trials: int, sampler: str) -> list[str]:
    return [
        "--step", "trivial",
        "--trials", str(trials),
        "--parallel", "2",
        "--sampler", sampler,
        "--seed", "1",
        "--query",
    ]  # fmt: skip


def run(settings: Settings) -> CaseResult:
    """Run the scale case: a big random sweep, then a TPE sweep for the slot idle time."""
    trials = 300 if settings.quick else 10_000
    tpe_trials = 200 if settings.quick else 2_000
    random_label, tpe_label = f"sweeper random ({trials})", f"sweeper tpe ({tpe_trials})"
    case = CaseResult(
        "scale",
        f"4. Scale: {trials} trivial trials (random sampler) and {tpe_trials} (TPE), parallel 2",
        "ms/trial in the first and last 10% of executions from the store's created_at/ended_at; "
        "run = inside the actor (created -> ended), between = the rest of a slot's time per trial "
        "(driver, Ray, Optuna). ls / best() = `sweep ls --sort -metric.loss --limit 10` and "
        "`results.best()` over the store as the sweep left it (no manual compact), in-process. "
        "slot idle = time freed slots waited for their next trial (sampler, journal, submit). "
        "Peak driver memory is the sweeper process alone.",
    )
    rows: list[Row] = []
    runs: dict[str, Any] = {}
    for label, n, sampler in ((random_label, trials, "random"), (tpe_label, tpe_trials, "tpe")):
        results = alternate(
            [Contender(label, "sweeper", _args(n, sampler))], 1, settings.workdir / "scale", case
        )
        row = summarize(label, results[label], n)
        rows.append(row)
        if results[label]:
            report = results[label][0].report
            runs[label] = report
            row.extra.update(windows(report["store"], 2))
            row.extra["last_over_first"] = (
                row.extra["last_ms_per_trial"] / row.extra["first_ms_per_trial"]
            )
            for key in ("ls_s", "best_s", "slot_idle_s", "parts"):
                row.extra[key] = report.get(key)
            if report.get("slot_idle_s") is not None:
                row.extra["slot_idle_ms_per_trial"] = report["slot_idle_s"] / n * 1000
    case.rows = rows
    big, tpe = rows
    if random_label not in runs:
        case.goals.append(Goal(f"{trials} trials in one sweep", "sweeper failed", None))
    else:
        ratio = big.extra["last_over_first"]
        case.goals.append(
            Goal(
                f"{trials} trials: per-trial overhead of the last 10% <= {FLAT} x the first 10%",
                f"{fmt(big.extra['first_ms_per_trial'], 1)} -> {fmt(big.extra['last_ms_per_trial'], 1)} "
                f"ms/trial ({ratio:.2f} x)",
                ratio <= FLAT,
            )
        )
        mb = big.peak_driver_mb
        case.goals.append(
            Goal(
                f"{trials} trials: driver peak RSS < {DRIVER_MB} MB",
                f"{fmt(mb, 0)} MB (tree {fmt(big.peak_tree_mb, 0)} MB)",
                None if mb is None else mb < DRIVER_MB,
            )
        )
        ls_s, best_s = big.extra.get("ls_s"), big.extra.get("best_s")
        case.goals.append(
            Goal(
                f"{trials} trials: `sweep ls --sort -metric.loss --limit 10` and `results.best()` "
                f"< {QUERY_S} s without a manual compact",
                f"ls {fmt(ls_s, 3)} s, best() {fmt(best_s, 3)} s; parts {big.extra.get('parts')}",
                None if ls_s is None or best_s is None else max(ls_s, best_s) < QUERY_S,
            )
        )
    if tpe_label in runs and tpe.extra.get("slot_idle_s") is not None:
        idle = tpe.extra["slot_idle_s"]
        case.goals.append(
            Goal(
                f"TPE, {tpe_trials} trials: slots never idle waiting for the sampler (reported)",
                f"slot idle {idle:.2f} s in all ({fmt(tpe.extra['slot_idle_ms_per_trial'], 2)} ms per "
                f"trial; random sweep {fmt(big.extra.get('slot_idle_ms_per_trial'), 2)} ms)",
                None,
            )
        )
    case.goals.append(memory_goal(case.rows, random_label))
    return case
