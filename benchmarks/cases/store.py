"""Case 6, results store: appends and queries as the store grows to 100,000 executions."""

from __future__ import annotations

from benchmarks.cases.base import CaseResult, Contender, Goal, Settings, alternate, fmt, summarize


def run(settings: Settings) -> CaseResult:
    """Run the store case."""
    total = 10_000 if settings.quick else 100_000
    case = CaseResult(
        "store",
        f"6. Results store: {total:,} executions, {50 * total:,} metric events",
        "First and last 1,000 executions appended one by one with `Store.write_execution`; the "
        "rows between are added in chunks of 1,000 with `Store.write_rows` (a compacted store). "
        "Query = read `executions`, sort by metric.loss, top 10 (API and `sweep ls --sort "
        "metric.loss --limit 10`), and `results.best()`, before and after "
        "`Store.compact('executions')`; `results.lineage()` of a 5-level chain.",
    )
    contender = Contender(
        "sweeper Store", "store_bench", ["--total", str(total), "--first", "1000"]
    )
    results = alternate([contender], 1, settings.workdir / "store", case)
    row = summarize(contender.label, results[contender.label], total)
    row.per_trial_ms = None
    case.rows = [row]
    if not results[contender.label]:
        return case
    report = results[contender.label][0].report
    for key in (
        "rows",
        "metric_events",
        "grow_metrics_s",
        "best_s",
        "best_compacted_s",
        "lineage_5_levels_s",
        "append_first_ms",
        "append_last_ms",
        "query_api_s",
        "query_cli_s",
        "compact_s",
        "parts_removed_by_compact",
        "query_api_compacted_s",
        "query_cli_compacted_s",
    ):
        row.extra[key] = report.get(key)
    for key in ("loop_s", "best", "trials_done"):
        row.extra.pop(key, None)
    if report.get("query_cli_s") is None:
        case.notes.append(
            "`sweep ls --sort metric.loss --limit 10` failed: the query was timed through the "
            "Store API only."
        )
    first, last = report["append_first_ms"]["median"], report["append_last_ms"]["median"]
    case.goals.append(
        Goal(
            "(info) append time flat as the store grows",
            f"median {fmt(first, 1)} ms first 1,000 -> {fmt(last, 1)} ms last 1,000; "
            f"{report.get('metric_events', 0):,} metric events; ls query {fmt(report['query_api_s'])} s "
            f"({report['parts_removed_by_compact']} parts), {fmt(report['query_api_compacted_s'], 3)} s compacted; "
            f"`sweep ls` (in-process) {fmt(report.get('query_cli_s'))} s / "
            f"{fmt(report.get('query_cli_compacted_s'), 3)} s compacted; "
            f"best() {fmt(report.get('best_s'))} s / {fmt(report.get('best_compacted_s'), 3)} s compacted; "
            f"lineage() of 5 levels {fmt(report.get('lineage_5_levels_s'))} s",
            last <= 1.25 * first,
        )
    )
    return case
