"""Turn execution records, metric events and generic rows into typed Arrow tables.

The record is nested (parameters, metrics, inputs, outputs); the datasets are flat. Fixed
columns get the types in :mod:`._schema`; ``param.<name>`` and ``metric.<name>`` columns
get a type inferred from their value (bool, int64, float64, string, or JSON text for
anything else).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

from ._schema import (
    ARTIFACTS,
    EXECUTIONS,
    METRIC_PREFIX,
    METRICS,
    PARAM_PREFIX,
    TIMESTAMP,
    USAGE_COLUMNS,
    empty_table,
    schema_for,
)

JSON_COLUMNS = {
    "executions": {"command", "parameters", "metrics", "gpu_ids", "warnings"},
    "sweeps": {"metrics", "directions", "search_space"},
    "pipeline_runs": {"nodes"},
    "artifacts": {"properties"},
}
"""Columns that hold a Python object as JSON text."""

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def to_json(value: Any) -> str:
    """JSON text for any value; NaN and infinities as JSON5-style NaN/Infinity, others via str."""
    return json.dumps(value, default=str, sort_keys=False)


def _is_json(text: str) -> bool:
    """Whether a string is already JSON text (callers may pass ``json.dumps`` output)."""
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def parse_time(value: Any, column: str = "time") -> datetime | None:
    """A UTC datetime from an ISO 8601 string or a datetime (naive ones are taken as UTC)."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            value = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"column {column!r}: not an ISO 8601 time: {value!r}") from exc
    if not isinstance(value, datetime):
        raise ValueError(f"column {column!r}: not a time: {value!r}")
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def finite_float(value: Any) -> float | None:
    """The value as a float when it is a finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        result = float(value)
    except OverflowError:
        return None
    return result if math.isfinite(result) else None


def _convert(value: Any, type_: pa.DataType, column: str, json_column: bool) -> Any:
    if value is None:
        return None
    if json_column:
        return value if isinstance(value, str) and _is_json(value) else to_json(value)
    if pa.types.is_timestamp(type_):
        return parse_time(value, column)
    if pa.types.is_string(type_):
        return value if isinstance(value, str) else to_json(value)
    if pa.types.is_integer(type_):
        return int(value)
    if pa.types.is_floating(type_):
        return float(value)
    return value


def _infer(values: list[Any], *, numeric_as_float: bool) -> tuple[pa.DataType, list[Any]]:
    """The narrowest Arrow type that holds every value, and the values converted for it."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pa.bool_(), values
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        ints = all(isinstance(v, int) for v in present)
        if ints and not numeric_as_float and all(_INT64_MIN <= v <= _INT64_MAX for v in present):
            return pa.int64(), values
        try:
            return pa.float64(), [None if v is None else float(v) for v in values]
        except OverflowError:
            pass
    if present and all(isinstance(v, datetime) for v in present):
        return TIMESTAMP, [parse_time(v) for v in values]
    if all(isinstance(v, str) for v in present):
        return pa.string(), values
    return pa.string(), [v if isinstance(v, str) or v is None else to_json(v) for v in values]


def rows_to_table(dataset: str, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """A table with the dataset's fixed columns first (typed), then every other column seen."""
    schema = schema_for(dataset)
    json_columns = JSON_COLUMNS.get(dataset, set())
    known = set(schema.names)
    extra: list[str] = []
    for row in rows:
        for key in row:
            if key not in known and key not in extra:
                extra.append(key)
    columns: list[list[Any]] = []
    fields: list[pa.Field] = []
    for field in schema:
        columns.append(
            [
                _convert(row.get(field.name), field.type, field.name, field.name in json_columns)
                for row in rows
            ]
        )
        fields.append(field)
    for name in extra:
        type_, values = _infer(
            [row.get(name) for row in rows], numeric_as_float=name.startswith(METRIC_PREFIX)
        )
        columns.append(values)
        fields.append(pa.field(name, type_))
    table_schema = pa.schema(fields)
    if not rows:
        return empty_table(table_schema)
    if len(rows) <= FEW_ROWS and "pandas" not in sys.modules:
        return _json_table(table_schema, columns)
    arrays = [pa.array(values, type=f.type) for f, values in zip(fields, columns, strict=True)]
    return pa.Table.from_arrays(arrays, schema=table_schema)


#: Up to this many rows, a process that has not imported pandas builds its table with
#: Arrow's JSON reader: ``pa.array`` imports pandas the first time it runs (pyarrow looks
#: for pandas objects), a fifth of a second of CPU that the sweep driver (one ``sweeps``
#: row at its start, one at its end) and each sweep actor (a batch of rows every 2 s)
#: would pay for nothing. The reader takes about twice ``pa.array``'s time per row (5 ms
#: against 2.5 ms for the 60 executions and 60 metric rows of a 2-s batch): below this
#: many rows that is less than the import; larger batches keep ``pa.array``.
FEW_ROWS = 2000


def _json_table(schema: pa.Schema, columns: list[list[Any]]) -> pa.Table:
    """The table ``pa.array`` would build from these converted columns, without pandas.

    Values are str, int, float (NaN and infinities as JSON5 literals, which Arrow reads;
    floats round-trip exactly), bool, UTC datetimes (ISO 8601) or None.
    """
    import pyarrow.json as pa_json

    names = schema.names
    text = "".join(
        json.dumps(dict(zip(names, row, strict=True)), default=_iso_time) + "\n"
        for row in zip(*columns, strict=True)
    )
    data = text.encode("utf-8")
    return pa_json.read_json(
        pa.BufferReader(data),
        read_options=pa_json.ReadOptions(use_threads=False, block_size=len(data) + 1),
        parse_options=pa_json.ParseOptions(
            explicit_schema=schema, unexpected_field_behavior="error"
        ),
    )


def _iso_time(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not a value of a dataset column: {value!r}")


def execution_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """The executions row of one record: fixed columns plus param.* and metric.* columns."""
    row: dict[str, Any] = {name: record.get(name) for name in EXECUTIONS.names}
    row["execution_id"] = record["id"]
    # a distributed member's group, from the distributed.json it was given
    config = (record.get("distributed") or {}).get("config") or {}
    row["group_id"] = config.get("group_name")
    row["member_id"] = None if config.get("member_id") is None else str(config["member_id"])
    usage = record.get("usage")
    if isinstance(usage, Mapping):  # the record's ``usage``: one column per figure
        row.update((name, usage.get(name)) for name in USAGE_COLUMNS)
    for name, value in (record.get("parameters") or {}).items():
        row[PARAM_PREFIX + str(name)] = value
    for name, value in (record.get("metrics") or {}).items():
        row[METRIC_PREFIX + str(name)] = value
    return row


def metric_rows(execution_id: str, events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One metrics row per key of each event, numbers in ``value``, everything in ``value_json``."""
    rows = []
    for position, event in enumerate(events):
        seq = event.get("seq", position)
        time = event.get("time")
        for key, value in (event.get("values") or {}).items():
            rows.append(
                {
                    "execution_id": execution_id,
                    "seq": seq,
                    "time": time,
                    "key": str(key),
                    "value": finite_float(value),
                    "value_json": to_json(value),
                }
            )
    return rows


def artifact_rows(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One artifacts row per input and per output of the record."""
    rows = []
    for direction, key in (("input", "inputs"), ("output", "outputs")):
        for item in record.get(key) or []:
            row = {name: item.get(name) for name in ARTIFACTS.names}
            row["execution_id"] = record["id"]
            row["direction"] = direction
            rows.append(row)
    return rows


def metrics_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """The metrics rows as a table with exactly the metrics schema."""
    return rows_to_table("metrics", rows).select(METRICS.names)
