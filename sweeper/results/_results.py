"""The notebook API: pandas DataFrames over a store's datasets."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from datetime import timezone
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from sweeper.errors import StoreError
from sweeper.status import Status
from sweeper.store import Store, parse_blob_uri
from sweeper.store._schema import ID_COLUMNS, METRIC_PREFIX, PARAM_PREFIX
from sweeper.store._unify import int64_array

from ._lineage import Lineage, build_lineage, datum_id

if TYPE_CHECKING:
    import pandas as pd

    from sweeper.sweep.failures import FailureGroup

    from .replay import Replay

_DIRECTIONS = {"minimize": True, "min": True, "maximize": False, "max": False}


def open(store: str | os.PathLike[str] | Store) -> Results:  # noqa: A001 - mirrors io.open
    """Results of the store at a path or URI (or of an open :class:`Store`).

    Example::

        import sweeper.results
        results = sweeper.results.open(".sweeper")
        results.best("sweep-01J...", k=5)
    """
    return Results(store if isinstance(store, Store) else Store.open(store))


def _decode(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


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


class Results:
    """Read-only views of a store; each call reads the store afresh."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def to_arrow(self, name: str) -> pa.Table:
        """A dataset as an Arrow table (every row, as stored)."""
        return self.store.read_dataset(name)

    def _frame(self, name: str) -> pd.DataFrame:
        return to_pandas(self.store.read_dataset(name))

    def executions(
        self, sweep_id: str | None = None, step: str | None = None, status: str | None = None
    ) -> pd.DataFrame:
        """One row per execution (the last row written for an id), ordered by counter."""
        return to_pandas(self.execution_table(sweep_id=sweep_id, step=step, status=status))

    def execution_table(
        self, sweep_id: str | None = None, step: str | None = None, status: str | None = None
    ) -> pa.Table:
        """:meth:`executions` as an Arrow table (what `sweep ls` reads, without pandas)."""
        return take(*self.execution_positions(sweep_id=sweep_id, step=step, status=status))

    def execution_positions(
        self, sweep_id: str | None = None, step: str | None = None, status: str | None = None
    ) -> tuple[pa.Table, list[int]]:
        """The executions dataset and the positions of :meth:`execution_table`'s rows in it.

        `sweep ls` converts only the rows it shows (:func:`rows_at`), without building the
        table of them, which would import ``pyarrow.compute``.
        """
        table = self.store.read_dataset("executions")
        keys = table.select(["execution_id", "sweep_id", "step", "status", "counter"]).to_pydict()
        last = {key: row for row, key in enumerate(keys["execution_id"])}
        rows = sorted(last.values())  # each id's last row, where it was written
        for column, value in (("sweep_id", sweep_id), ("step", step), ("status", status)):
            if value is not None:
                rows = [row for row in rows if keys[column][row] == value]
                if column == "sweep_id" and not rows and not self._has_sweep(value):
                    raise StoreError(f"unknown sweep {value!r} in store {self.store.location}")
        rows.sort(key=lambda row: missing_last(keys["counter"][row]))
        return table, rows

    def metrics(self, execution_id: str | None = None) -> pd.DataFrame:
        """Metric events, one row per key (``value`` numeric, ``value_json`` any value)."""
        df = self._frame("metrics")
        if execution_id is not None:
            full_id = self.store.find_execution(execution_id)["id"]
            df = df[df["execution_id"] == full_id]
        return df.reset_index(drop=True)

    def artifacts(self, execution_id: str | None = None) -> pd.DataFrame:
        """Inputs and outputs of executions, one row each."""
        df = self._frame("artifacts")
        if execution_id is not None:
            full_id = self.store.find_execution(execution_id)["id"]
            df = df[df["execution_id"] == full_id]
        return df.reset_index(drop=True)

    def _latest(self, dataset: str) -> pd.DataFrame:
        df = self._frame(dataset)
        if df.empty:
            return df
        df = df.sort_values("updated_at", kind="stable")
        df = df.drop_duplicates(ID_COLUMNS[dataset], keep="last")
        return df.sort_values("created_at", kind="stable").reset_index(drop=True)

    def sweeps(self) -> pd.DataFrame:
        """One row per sweep (its latest status); metrics, directions, search_space decoded."""
        df = self._latest("sweeps")
        for column in ("metrics", "directions", "search_space"):
            df[column] = df[column].map(_decode).astype(object)
        return df

    def pipeline_runs(self) -> pd.DataFrame:
        """One row per pipeline run (its latest status); nodes decoded."""
        df = self._latest("pipeline_runs")
        df["nodes"] = df["nodes"].map(_decode).astype(object)
        return df

    def _has_sweep(self, sweep_id: str) -> bool:
        ids = self.store.read_dataset("sweeps", columns=["sweep_id"]).column("sweep_id")
        return sweep_id in ids.to_pylist()

    def _sweep(self, sweep_id: str) -> dict[str, Any] | None:
        df = self.sweeps()
        rows = df[df["sweep_id"] == sweep_id]
        return None if rows.empty else rows.iloc[-1].to_dict()

    def best(
        self,
        sweep_id: str,
        k: int = 10,
        metric: str | None = None,
        direction: str | None = None,
    ) -> pd.DataFrame:
        """The ``k`` best complete executions of a sweep by a metric.

        ``metric`` and ``direction`` default to the sweep's first objective.
        """
        sweep = self._sweep(sweep_id)
        objectives = list(sweep["metrics"] or []) if sweep else []
        directions = list(sweep["directions"] or []) if sweep else []
        if metric is None:
            if not objectives:
                raise StoreError(
                    f"sweep {sweep_id!r} has no recorded objective: pass metric= and direction="
                )
            metric = str(objectives[0])
        if direction is None:
            if metric in objectives and objectives.index(metric) < len(directions):
                direction = str(directions[objectives.index(metric)])
            else:
                raise StoreError(f"pass direction='minimize' or 'maximize' for metric {metric!r}")
        ascending = _DIRECTIONS.get(direction.lower())
        if ascending is None:
            raise StoreError(f"direction must be 'minimize' or 'maximize', not {direction!r}")
        df = self.executions(sweep_id=sweep_id, status=Status.COMPLETE)
        if df.empty:
            return df
        column = METRIC_PREFIX + metric
        if column not in df.columns or df[column].isna().all():
            known = sorted(
                c[len(METRIC_PREFIX) :] for c in df.columns if c.startswith(METRIC_PREFIX)
            )
            raise StoreError(
                f"no complete execution of sweep {sweep_id!r} reported metric {metric!r}; "
                f"known metrics: {', '.join(known) or 'none'}"
            )
        import pandas as pd

        key = pd.to_numeric(df[column], errors="coerce")
        df = df.assign(_key=key)[key.notna()]
        df = df.sort_values("_key", ascending=ascending, kind="stable").drop(columns="_key")
        return df.head(k).reset_index(drop=True)

    def replay(self, sweep_id: str, pruner: str = "median") -> Replay:
        """What ``pruner`` (median, asha, hyperband) would have stopped in a finished sweep,
        the compute it would have saved and whether the best trial would have survived,
        replayed from the recorded metric curves (see :mod:`sweeper.results.replay`)."""
        from .replay import replay_sweep  # Optuna and pandas: not for `sweep ls`

        return replay_sweep(self, sweep_id, pruner)

    def failures(self, sweep_id: str) -> list[FailureGroup]:
        """A sweep's failed trials grouped by reason, most common first, each with its count
        and one example execution id (what ``sweep status`` prints)."""
        from sweeper.sweep.study import sweep_failures  # Optuna: not for `sweep ls`

        return sweep_failures(self.store, sweep_id)

    def compare(self, ids: Iterable[str]) -> pd.DataFrame:
        """Parameters and metrics side by side: one column per execution, one row per name."""
        records = [self.store.find_execution(ref) for ref in ids]
        records = list({r["id"]: r for r in records}.values())
        names: dict[str, None] = {}
        for record in records:
            names.update({PARAM_PREFIX + k: None for k in record.get("parameters") or {}})
        for record in records:
            names.update({METRIC_PREFIX + k: None for k in record.get("metrics") or {}})
        import pandas as pd

        columns = {}
        for record in records:
            values: dict[str, Any] = {
                "counter": record.get("counter"),
                "step": record.get("step"),
                "status": record.get("status"),
            }
            params, metrics = record.get("parameters") or {}, record.get("metrics") or {}
            for name in names:
                source = params if name.startswith(PARAM_PREFIX) else metrics
                prefix = PARAM_PREFIX if name.startswith(PARAM_PREFIX) else METRIC_PREFIX
                values[name] = source.get(name[len(prefix) :])
            columns[str(record["id"])] = pd.Series(values, dtype=object)
        return pd.DataFrame(columns, index=["counter", "step", "status", *names])

    def lineage(self, ref: str) -> Lineage:
        """Upstream producers and downstream consumers of an execution or a ``datum://`` URI."""
        artifacts = self.to_arrow("artifacts").to_pylist()
        sha = parse_blob_uri(ref) if ref.startswith("datum://") else None
        if sha is not None:
            root, kind = ref, "datum"
            if not any(datum_id(r) == root for r in artifacts) and not self.store.has_blob(sha):
                raise StoreError(f"unknown datum {ref!r} in store {self.store.location}")
        else:
            root, kind = str(self.store.find_execution(ref)["id"]), "execution"
        table = self.store.read_dataset(
            "executions", columns=["execution_id", "counter", "step", "status"]
        )
        attrs = {
            row.pop("execution_id"): row for row in table.to_pylist() if row.get("execution_id")
        }
        return build_lineage(root, kind, artifacts, attrs)
