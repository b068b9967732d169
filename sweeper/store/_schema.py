"""The store's format: the marker, the datasets and their Arrow schemas.

Bump :data:`SCHEMA_VERSION` (and document it in docs/store.md) for any change a reader of
an older version would misread. Adding a ``param.*``/``metric.*`` column is not a change:
those columns differ between executions by design.
"""

from __future__ import annotations

import pyarrow as pa

# The marker and ID_COLUMNS live in _format (no pyarrow); results reads ID_COLUMNS here.
from ._format import ID_COLUMNS as ID_COLUMNS

PARAM_PREFIX = "param."
METRIC_PREFIX = "metric."

TIMESTAMP = pa.timestamp("us", tz="UTC")

EXECUTIONS = pa.schema(
    [
        ("execution_id", pa.string()),
        ("counter", pa.int64()),
        ("sweep_id", pa.string()),
        ("pipeline_run_id", pa.string()),
        ("node", pa.string()),
        ("trial_number", pa.int64()),
        ("step", pa.string()),
        ("status", pa.string()),
        ("exit_code", pa.int64()),
        ("error", pa.string()),
        ("image", pa.string()),
        ("image_digest", pa.string()),
        ("code_version", pa.string()),
        ("command", pa.string()),
        ("parameters", pa.string()),
        ("metrics", pa.string()),
        ("created_at", TIMESTAMP),
        ("started_at", TIMESTAMP),
        ("ended_at", TIMESTAMP),
        ("duration_s", pa.float64()),
        ("runtime", pa.string()),
        ("ray_node", pa.string()),
        ("gpu_ids", pa.string()),
        ("attempt", pa.int64()),
        ("reused_from", pa.string()),
        ("spec_hash", pa.string()),
        ("metrics_dropped", pa.int64()),
        ("outputs_skipped", pa.string()),
        ("failure_kind", pa.string()),
        ("warnings", pa.string()),
        ("group_id", pa.string()),
        ("member_id", pa.string()),
        ("cpu_s", pa.float64()),
        ("peak_memory_mb", pa.float64()),
        ("gpu_s", pa.float64()),
    ]
)
#: The executions columns of a record's ``usage`` (what the step used).
USAGE_COLUMNS = ("cpu_s", "peak_memory_mb", "gpu_s")

METRICS = pa.schema(
    [
        ("execution_id", pa.string()),
        ("seq", pa.int64()),
        ("time", TIMESTAMP),
        ("key", pa.string()),
        ("value", pa.float64()),
        ("value_json", pa.string()),
    ]
)

ARTIFACTS = pa.schema(
    [
        ("execution_id", pa.string()),
        ("direction", pa.string()),
        ("name", pa.string()),
        ("path", pa.string()),
        ("uri", pa.string()),
        ("sha256", pa.string()),
        ("size", pa.int64()),
        ("producer_execution_id", pa.string()),
        ("properties", pa.string()),
    ]
)

SWEEPS = pa.schema(
    [
        ("sweep_id", pa.string()),
        ("step", pa.string()),
        ("sampler", pa.string()),
        ("pruner", pa.string()),
        ("metrics", pa.string()),
        ("directions", pa.string()),
        ("search_space", pa.string()),
        ("seed", pa.int64()),
        ("trials_asked", pa.int64()),
        ("status", pa.string()),
        ("best_execution_id", pa.string()),
        ("created_at", TIMESTAMP),
        ("updated_at", TIMESTAMP),
    ]
)

PIPELINE_RUNS = pa.schema(
    [
        ("pipeline_run_id", pa.string()),
        ("pipeline", pa.string()),
        ("status", pa.string()),
        ("nodes", pa.string()),
        ("created_at", TIMESTAMP),
        ("updated_at", TIMESTAMP),
    ]
)

DATASET_VERSIONS = pa.schema(
    [
        ("name", pa.string()),
        ("version", pa.string()),
        ("file", pa.string()),
        ("sha256", pa.string()),
        ("size", pa.int64()),
        ("execution_id", pa.string()),
        ("created_at", TIMESTAMP),
    ]
)
"""One row per file of each dataset version; ``execution_id`` made it, ``created_at`` is
when that execution ended."""

SCHEMAS: dict[str, pa.Schema] = {
    "executions": EXECUTIONS,
    "metrics": METRICS,
    "artifacts": ARTIFACTS,
    "sweeps": SWEEPS,
    "pipeline_runs": PIPELINE_RUNS,
    "dataset_versions": DATASET_VERSIONS,
}
"""The datasets every store has; :meth:`Store.write_rows` may add others."""


def schema_for(dataset: str) -> pa.Schema:
    """The base schema of a dataset (an empty one for a dataset the store does not know)."""
    return SCHEMAS.get(dataset, pa.schema([]))


def empty_table(schema: pa.Schema) -> pa.Table:
    """A table of ``schema`` with no rows, as ``schema.empty_table()`` makes it, without
    pandas: ``empty_table`` builds each column with ``pa.array``, whose first call imports
    pandas (a fifth of a second of CPU) in a driver that reads an empty dataset at its start."""
    columns = [pa.nulls(0, field.type) for field in schema]
    return pa.Table.from_batches([pa.RecordBatch.from_arrays(columns, schema=schema)])
