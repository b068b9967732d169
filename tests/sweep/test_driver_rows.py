"""The sweep driver's few dataset rows: written without importing pandas, read back the same.

pyarrow's ``pa.array`` imports pandas on first use; a process that writes only a few rows
(the driver's ``sweeps`` rows) builds them with Arrow's JSON reader instead. Both ways must
give the same table, whatever the values.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas  # noqa: F401  (this process writes through pa.array, the subprocess without)

from sweeper.store import Store

#: Values that differ between careless conversions: NaN and infinities, -0.0, the float
#: extremes, ints at the int64 edge, bools among metrics, naive and "Z" times, non-ASCII
#: text, nested objects in JSON columns, None everywhere.
ROWS: list[dict[str, Any]] = [
    {
        "execution_id": "01M8NW3DW7A3D46MXP74CHYYD4",
        "status": "complete",
        "step": "tränë 🚀",
        "created_at": "2026-11-30T09:15:18.123456Z",
        "started_at": datetime(2026, 11, 30, 9, 15, 18),
        "trial_number": 2**63 - 1,
        "parameters": {"x": [1, 2], "y": None},
        "metrics": {"loss": float("nan")},
        "param.x": -0.0,
        "param.name": 'a\nb"c',
        "metric.loss": float("nan"),
        "metric.inf": float("inf"),
        "metric.tiny": 5e-324,
        "metric.flag": True,
        "metric.count": -(2**63),
    },
    {
        "execution_id": "01M8NW3DW7A3D46MXP74CHYYD5",
        "status": None,
        "created_at": datetime(2026, 1, 1, tzinfo=timezone.utc),
        "metrics": '{"already": "json"}',
        "param.x": 1.7976931348623157e308,
        "param.name": None,
        "metric.loss": 0.1,
        "metric.inf": float("-inf"),
        "metric.flag": False,
    },
]

WRITER = """
import json, sys
from datetime import datetime
from sweeper.store import Store
rows = json.loads(sys.argv[2])
for row in rows:  # the datetimes the test gives as such
    for key in ("started_at", "created_at"):
        if isinstance(row.get(key), dict):
            row[key] = datetime.fromisoformat(row[key]["iso"])
store = Store.open(sys.argv[1], create=True)
store.write_rows("executions", rows)
store.write_rows("sweeps", [{"sweep_id": "s1", "step": "train", "status": "running",
                             "metrics": ["loss"], "seed": 7, "updated_at": "2026-11-30T10:00:00Z"}])
print(json.dumps({"pandas": "pandas" in sys.modules}))
"""


def _encode(value: Any) -> Any:
    return {"iso": value.isoformat()} if isinstance(value, datetime) else value


def test_few_rows_written_without_pandas_read_back_like_pa_array_ones(tmp_path: Path) -> None:
    without, with_pandas = tmp_path / "without", tmp_path / "with"
    payload = json.dumps([{k: _encode(v) for k, v in row.items()} for row in ROWS])
    done = subprocess.run(
        [sys.executable, "-c", WRITER, str(without), payload],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"pandas": False}

    store = Store.open(with_pandas, create=True)
    store.write_rows("executions", ROWS)
    store.write_rows(
        "sweeps",
        [
            {
                "sweep_id": "s1",
                "step": "train",
                "status": "running",
                "metrics": ["loss"],
                "seed": 7,
                "updated_at": "2026-11-30T10:00:00Z",
            }
        ],
    )
    for dataset in ("executions", "sweeps"):
        expected = store.read_dataset(dataset)
        got = Store.open(without).read_dataset(dataset)
        assert got.schema == expected.schema, dataset
        # NaN != NaN: compare the JSON text of the rows (NaN written as NaN both sides)
        assert json.dumps(got.to_pylist(), default=str) == json.dumps(
            expected.to_pylist(), default=str
        ), dataset
