"""The two ways rows become a table give the same table: Arrow's JSON reader (a process
without pandas, batches up to ``FEW_ROWS``: a sweep's actors) and ``pa.array`` (the rest).

The JSON path runs in a child process that has not imported pandas, as an actor has not.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from sweeper.store import _rows
from tests.store.store_workers import events, make_record

CHILD = """
import pickle, sys
import pyarrow.parquet as pq
from sweeper.store import _rows
batches = pickle.load(open(sys.argv[1], "rb"))
for name, (dataset, rows) in batches.items():
    table = _rows.metrics_table(rows) if dataset == "metrics" else _rows.rows_to_table(dataset, rows)
    pq.write_table(table, f"{sys.argv[2]}/{name}.parquet")
assert "pandas" not in sys.modules, "the JSON path was not taken"
"""


def _batches() -> dict[str, tuple[str, list[dict[str, Any]]]]:
    """Rows of every kind of value a record's columns take."""
    records = [
        make_record(1, metrics={"loss": 0.25, "acc": 1, "ok": True}, parameters={"lr": 0.1}),
        make_record(2, metrics={"loss": math.nan, "acc": math.inf}, parameters={"lr": 3}),
        make_record(3, metrics={"loss": -math.inf}, parameters={"lr": None, "name": "ü ✓"}),
        make_record(4, status="error", exit_code=None, error="boom", parameters={"flag": False}),
        make_record(5, metrics={"loss": 1e308, "big": 2**53 + 1}, parameters={"n": 2**40}),
    ]
    executions = [_rows.execution_row(r) for r in records]
    metrics: list[dict[str, Any]] = []
    for record in records:
        metrics += _rows.metric_rows(record["id"], events(3))
    return {"executions": ("executions", executions), "metrics": ("metrics", metrics)}


def test_the_json_reader_and_pa_array_build_the_same_table(tmp_path: Path) -> None:
    import pickle

    batches = _batches()
    (tmp_path / "rows.pkl").write_bytes(pickle.dumps(batches))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "rows.pkl"), str(tmp_path)],
        env=env,
        check=True,
        timeout=120,
    )
    for name, (dataset, rows) in batches.items():
        by_json = pq.read_table(tmp_path / f"{name}.parquet")
        saved = _rows.FEW_ROWS
        _rows.FEW_ROWS = 0  # pa.array, whatever this process imported
        try:
            if dataset == "metrics":
                by_array = _rows.metrics_table(rows)
            else:
                by_array = _rows.rows_to_table(dataset, rows)
        finally:
            _rows.FEW_ROWS = saved
        assert by_json.schema.equals(by_array.schema), (by_json.schema, by_array.schema)
        assert by_json.to_pylist() == by_array.to_pylist() or _same_with_nan(
            by_json.to_pylist(), by_array.to_pylist()
        )


def _same_with_nan(left: list[dict[str, Any]], right: list[dict[str, Any]]) -> bool:
    """Row lists equal, NaN counted equal to NaN."""

    def norm(value: Any) -> Any:
        return "NaN" if isinstance(value, float) and math.isnan(value) else value

    return [{k: norm(v) for k, v in r.items()} for r in left] == [
        {k: norm(v) for k, v in r.items()} for r in right
    ]
