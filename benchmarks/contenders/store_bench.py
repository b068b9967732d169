"""The results store at scale: append executions one by one, then query the executions.

1. append the first ``--first`` executions one at a time with ``Store.write_execution``
   (record + one metric event), timing each;
2. grow the store to ``--total - --first`` rows with ``Store.write_rows`` in chunks of 1,000
   (a stand-in for a long-lived, compacted store: the rows, not the execution folders);
3. append the last ``--first`` executions one at a time, timing each;
   and ``--events-per-execution`` metric events for each of those executions (5,000,000
   for the full 100,000), written as metrics parts of about 50,000 rows;
4. query: read the ``executions`` dataset, sort by ``metric.loss``, keep 10 (what
   ``sweep ls --sort metric.loss --limit 10`` does), with ``sweep ls`` itself, and
   ``results.best()``; ``results.lineage()`` of a 5-level chain of executions; then
   ``Store.compact("executions")`` and the same queries again.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import statistics
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from benchmarks.contenders.common import Clock

CHUNK = 1000


def record(counter: int, rng: random.Random, when: datetime) -> dict[str, Any]:
    """A synthetic, complete execution record of the ``trivial`` step."""
    from sweeper.execution.ids import new_execution_id

    x = rng.random()
    ended = when + timedelta(milliseconds=30)
    return {
        "id": new_execution_id(int(when.timestamp() * 1000)),
        "counter": counter,
        "step": "trivial",
        "status": "complete",
        "exit_code": 0,
        "error": None,
        "command": [f"python3 ./trivial.py --x={x}"],
        "image": None,
        "image_digest": None,
        "code_version": "files:0000000000000000",
        "parameters": {"x": x},
        "metrics": {"loss": (x - 0.3) ** 2},
        "inputs": [],
        "outputs": [],
        "created_at": when.isoformat(),
        "started_at": when.isoformat(),
        "ended_at": ended.isoformat(),
        "duration_s": 0.03,
        "runtime": "local",
        "sweep_id": "BENCHSWEEP",
        "trial_number": counter - 1,
        "attempt": 1,
        "spec_hash": f"{counter:064x}",
    }


def append_timed(store: Any, start: int, count: int, rng: random.Random) -> list[float]:
    """Append ``count`` executions one at a time; the seconds each append took."""
    times = []
    now = datetime.now(timezone.utc)
    for i in range(count):
        rec = record(start + i, rng, now + timedelta(milliseconds=i))
        events = [{"seq": 0, "time": rec["ended_at"], "values": dict(rec["metrics"])}]
        t = time.perf_counter()
        store.write_execution(rec, events)
        times.append(time.perf_counter() - t)
    return times


def grow(store: Any, start: int, count: int, rng: random.Random) -> tuple[float, list[str]]:
    """Add ``count`` executions rows in chunks of CHUNK; (the seconds it took, their ids)."""
    from sweeper.store._rows import execution_row

    t = time.perf_counter()
    base = datetime.now(timezone.utc)
    ids: list[str] = []
    for offset in range(0, count, CHUNK):
        n = min(CHUNK, count - offset)
        rows = [
            execution_row(
                record(start + offset + i, rng, base + timedelta(milliseconds=offset + i))
            )
            for i in range(n)
        ]
        ids.extend(str(r["execution_id"]) for r in rows)
        store.write_rows("executions", rows)
    return time.perf_counter() - t, ids


def grow_metrics(store: Any, ids: list[str], per_execution: int, rng: random.Random) -> float:
    """Add ``per_execution`` metric events for each id, as parts of about 50,000 rows."""
    import pyarrow as pa

    from sweeper.store._parts import Parts
    from sweeper.store._schema import schema_for

    schema = schema_for("metrics")
    parts = Parts(store.backend, "metrics")
    when = datetime.now(timezone.utc)
    per_part = max(1, 50_000 // per_execution)
    t = time.perf_counter()
    for offset in range(0, len(ids), per_part):
        chunk = ids[offset : offset + per_part]
        n = len(chunk) * per_execution
        values = [rng.random() for _ in range(n)]
        table = pa.Table.from_arrays(
            [
                pa.array([i for i in chunk for _ in range(per_execution)], pa.string()),
                pa.array(list(range(per_execution)) * len(chunk), pa.int64()),
                pa.array([when] * n, schema.field("time").type),
                pa.array(["loss"] * n, pa.string()),
                pa.array(values, pa.float64()),
                pa.array([repr(v) for v in values], pa.string()),
            ],
            schema=schema,
        )
        parts.write(table)
    return time.perf_counter() - t


def query_best(store: Any) -> float:
    """``sweeper.results.open(store).best(sweep, k=10)`` over every execution; seconds."""
    import sweeper.results

    t = time.perf_counter()
    best = sweeper.results.open(store).best("BENCHSWEEP", k=10, metric="loss", direction="minimize")
    assert len(best) == 10
    return time.perf_counter() - t


def lineage_chain(store: Any, depth: int, start: int, rng: random.Random) -> float:
    """Append a chain of ``depth`` executions, each reading the previous one's output, and
    time ``lineage()`` of the last one (which must reach all the others); seconds."""
    import hashlib

    import sweeper.results

    previous: dict[str, Any] | None = None
    when = datetime.now(timezone.utc)
    for level in range(depth):
        rec = record(start + level, rng, when + timedelta(seconds=level))
        rec["sweep_id"] = None
        sha = hashlib.sha256(f"level {level} of the chain".encode()).hexdigest()
        rec["outputs"] = [
            {
                "name": "out.bin",
                "path": "out.bin",
                "uri": f"datum://{sha}",
                "sha256": sha,
                "size": 1,
            }
        ]
        if previous is not None:
            made = previous["outputs"][0]
            rec["inputs"] = [
                {
                    "name": "data",
                    "uri": made["uri"],
                    "path": "data/out.bin",
                    "sha256": made["sha256"],
                    "size": 1,
                    "producer_execution_id": previous["id"],
                }
            ]
        store.write_execution(rec, [])
        previous = rec
    assert previous is not None
    t = time.perf_counter()
    graph = sweeper.results.open(store).lineage(previous["id"])
    seconds = time.perf_counter() - t
    assert len(graph.executions("upstream")) == depth - 1, graph.to_dict()
    return seconds


def query_api(store: Any) -> tuple[float, list[float]]:
    """Read the executions, sort by metric.loss, keep 10; (seconds, the 10 losses)."""
    import pyarrow.compute as pc

    t = time.perf_counter()
    table = store.read_dataset("executions")
    indices = pc.sort_indices(table, sort_keys=[("metric.loss", "ascending")])[:10]
    top = table.take(indices)
    return time.perf_counter() - t, top.column("metric.loss").to_pylist()


def query_cli(store_path: str) -> float | None:
    """``sweep ls --sort metric.loss --limit 10 --store PATH`` in-process; None when it fails."""
    from sweeper.cli.main import main as sweep_main

    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            sweep_main(["ls", "--sort", "metric.loss", "--limit", "10", "--store", store_path])
        except SystemExit as exc:
            if exc.code not in (0, None):
                return None
    return time.perf_counter() - t


def main() -> None:
    """Run the store benchmark and write the report."""
    clock = Clock()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--total", type=int, default=100_000)
    parser.add_argument("--first", type=int, default=1000)
    parser.add_argument("--events-per-execution", type=int, default=50)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    from sweeper.store import Store

    rng = random.Random(0)
    path = args.workdir / "store"
    store = Store.open(str(path), create=True)
    clock.mark("ready")
    first = append_timed(store, 1, args.first, rng)
    clock.mark("first_appends")
    grow_s, grown = grow(store, args.first + 1, args.total - 2 * args.first, rng)
    clock.mark("grow")
    metrics_s = grow_metrics(store, grown, args.events_per_execution, rng)
    clock.mark("grow_metrics")
    last = append_timed(store, args.total - args.first + 1, args.first, rng)
    clock.mark("last_appends")
    api_s, top = query_api(store)
    cli_s = query_cli(str(path))
    best_s = query_best(store)
    clock.mark("query")
    lineage_s = lineage_chain(store, 5, args.total + 1, rng)
    clock.mark("lineage")
    t = time.perf_counter()
    removed = store.compact("executions")
    compact_s = time.perf_counter() - t
    api_compacted_s, _ = query_api(store)
    cli_compacted_s = query_cli(str(path))
    clock.mark("compacted_query")
    best_compacted_s = query_best(store)
    rows = store.read_dataset("executions", columns=["execution_id"]).num_rows
    events = store.read_dataset("metrics", columns=["seq"]).num_rows
    report = {
        "rows": rows,
        "metric_events": events,
        "grow_metrics_s": metrics_s,
        "best_s": best_s,
        "best_compacted_s": best_compacted_s,
        "lineage_5_levels_s": lineage_s,
        "append_first_ms": {
            "median": statistics.median(first) * 1000,
            "p95": sorted(first)[int(0.95 * len(first))] * 1000,
        },
        "append_last_ms": {
            "median": statistics.median(last) * 1000,
            "p95": sorted(last)[int(0.95 * len(last))] * 1000,
        },
        "grow_s": grow_s,
        "query_api_s": api_s,
        "query_cli_s": cli_s,
        "compact_s": compact_s,
        "parts_removed_by_compact": removed,
        "query_api_compacted_s": api_compacted_s,
        "query_cli_compacted_s": cli_compacted_s,
        "top_loss": top[0] if top else None,
        "phases": clock.marks,
    }
    args.out.write_text(json.dumps(report))


if __name__ == "__main__":
    main()
