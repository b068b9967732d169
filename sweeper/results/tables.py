"""Arrow tables as rows and DataFrames, cheaply: what `sweep ls` needs without pandas.

pyarrow imports pandas (or ``pyarrow.compute``) for some conversions; these helpers take
the paths that do not, so that the quick commands read Parquet without paying for them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import timezone
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from sweeper.store._unify import int64_array

if TYPE_CHECKING:
    import pandas as pd


def take(table: pa.Table, rows: Sequence[int]) -> pa.Table:
    """The rows at these positions, in this order.

    The positions become Arrow without pyarrow's pandas import (see ``int64_array``).
    """
    return table.take(int64_array(rows))


def to_rows(table: pa.Table) -> list[dict[str, Any]]:
    """``table.to_pylist()``, zoned times converted here: pyarrow imports pandas to convert them.

    A zoned column is read through a zero-copy view as naive UTC times (a cast would import
    ``pyarrow.compute``, ~40 ms that ``sweep ls`` need not pay).
    """
    zones = {f.name: f.type.tz for f in table.schema if pa.types.is_timestamp(f.type) and f.type.tz}
    if not zones:
        return list(table.to_pylist())
    columns = [
        _naive(table.column(f.name), f.type) if f.name in zones else table.column(f.name)
        for f in table.schema
    ]
    rows = pa.Table.from_arrays(columns, names=table.column_names).to_pylist()
    for name, zone in zones.items():
        tzinfo = timezone.utc if zone in ("UTC", "+00:00") else _zone(zone)
        for row in rows:
            if row[name] is not None:  # the naive value is the UTC time
                row[name] = row[name].replace(tzinfo=timezone.utc).astimezone(tzinfo)
    return list(rows)


def _naive(column: pa.ChunkedArray, zoned: pa.TimestampType) -> pa.ChunkedArray:
    """A zoned timestamp column as naive UTC times: the same values, viewed without a copy."""
    naive = pa.timestamp(zoned.unit)
    return pa.chunked_array([chunk.view(naive) for chunk in column.chunks], type=naive)


def _zone(name: str) -> Any:
    from zoneinfo import ZoneInfo  # only for a zone other than UTC, which sweeper never writes

    return ZoneInfo(name)


def rows_at(table: pa.Table, positions: Sequence[int]) -> list[dict[str, Any]]:
    """:func:`to_rows` of the rows at these positions, in this order, without ``take``.

    ``Table.take`` imports ``pyarrow.compute``; a few rows (``ls --limit``) are converted one
    slice each, many by converting the table once.
    """
    if len(positions) * 4 >= table.num_rows:
        rows = to_rows(table)
        return [rows[i] for i in positions]
    return [to_rows(table.slice(i, 1))[0] for i in positions]


def missing_last(value: Any) -> tuple[bool, Any]:
    """A sort key that puts None and NaN after every value, as pandas sorts NA last."""
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    return (missing, 0 if missing else value)


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """A dataset table as a DataFrame; integer columns with gaps (trial_number of a plain run)
    stay integers, not floats."""
    import pandas as pd  # here, not at the top: `sweep ls` and `status` run without pandas

    integers = {pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int64Dtype()}
    return table.to_pandas(types_mapper=integers.get)


__all__ = ["missing_last", "rows_at", "take", "to_pandas", "to_rows"]
