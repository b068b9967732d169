"""The notebook API: pandas DataFrames over a store's datasets."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from sweeper.errors import StoreError
from sweeper.record import ExecutionRecord
from sweeper.status import Status
from sweeper.store import Store, dataset_versions, parse_blob_uri
from sweeper.store._schema import ID_COLUMNS, METRIC_PREFIX, PARAM_PREFIX

from ._lineage import Lineage, build_lineage, datum_id
from .tables import missing_last, take, to_pandas

if TYPE_CHECKING:
    import pandas as pd

    from sweeper.sweep.failures import FailureGroup
    from sweeper.sweep.result import SweepResult

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


def _properties(text: Any) -> Any:
    """An output's properties (a dict), or None where there are none (pandas gives NaN)."""
    return _decode(text) if isinstance(text, str) else None


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
            df = df[df["execution_id"] == self._record(execution_id).id]
        return df.reset_index(drop=True)

    def artifacts(self, execution_id: str | None = None) -> pd.DataFrame:
        """Inputs and outputs of executions, one row each; ``properties`` decoded (a dict for
        an output with properties, else None)."""
        df = self._frame("artifacts")
        if execution_id is not None:
            df = df[df["execution_id"] == self._record(execution_id).id]
        df = df.reset_index(drop=True)
        df["properties"] = df["properties"].astype(object).map(_properties)
        return df

    def datasets(self, name: str | None = None) -> list[dict[str, Any]]:
        """The dataset versions (of dataset ``name``), by name, oldest first.

        Each is ``{uri, name, version, made_by, created_at, size, files: [{path, sha256,
        size}], used_by: [execution ids that took it as an input]}``. An unknown ``name``
        raises :class:`StoreError`.
        """
        versions = dataset_versions(self.store, name)
        if name is not None and not versions:
            raise StoreError(f"no dataset {name!r} in the store {self.store.location}")
        used: dict[str, list[str]] = {}
        columns = ["execution_id", "direction", "uri"]
        for row in self.store.read_dataset("artifacts", columns=columns).to_pylist():
            uri = row["uri"] or ""
            if row["direction"] == "input" and uri.startswith("dataset://"):
                users = used.setdefault(uri, [])
                if row["execution_id"] not in users:
                    users.append(row["execution_id"])
        return [{**v.to_dict(), "used_by": used.get(v.uri, [])} for v in versions]

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

    def sweep(self, sweep_id: str) -> dict[str, Any] | None:
        """The sweep's row of :meth:`sweeps` (its latest status), or None for an unknown id."""
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
        sweep = self.sweep(sweep_id)
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

    def status(self, sweep_id: str) -> SweepResult:
        """How a sweep stands now, also while it runs: what ``sweep status --json`` prints
        (``to_dict()``), with its ``forecast`` (time to finish, CPU-/GPU-hours) and budget."""
        from sweeper.sweep.summary import sweep_summary  # Optuna: not for `sweep ls`

        return sweep_summary(self.store, sweep_id)

    def failures(self, sweep_id: str) -> list[FailureGroup]:
        """A sweep's failed trials grouped by reason, most common first, each with its count
        and one example execution id (what ``sweep status`` prints)."""
        from sweeper.sweep.study import sweep_failures  # Optuna: not for `sweep ls`

        return sweep_failures(self.store, sweep_id)

    def compare(self, ids: Iterable[str]) -> pd.DataFrame:
        """Parameters and metrics side by side: one column per execution, one row per name."""
        records = list({r.id: r for r in map(self._record, ids)}.values())
        names = [
            *dict.fromkeys(PARAM_PREFIX + k for r in records for k in r.parameters),
            *dict.fromkeys(METRIC_PREFIX + k for r in records for k in r.metrics),
        ]
        import pandas as pd

        columns = {}
        for record in records:
            values: dict[str, Any] = {
                "counter": record.counter,
                "step": record.step,
                "status": record.status.value,
            }
            for name in names:
                if name.startswith(PARAM_PREFIX):
                    values[name] = record.parameters.get(name[len(PARAM_PREFIX) :])
                else:
                    values[name] = record.metrics.get(name[len(METRIC_PREFIX) :])
            columns[record.id] = pd.Series(values, dtype=object)
        return pd.DataFrame(columns, index=["counter", "step", "status", *names])

    def _record(self, ref: str) -> ExecutionRecord:
        """The record of the execution an id, prefix, ``#12`` or ``latest`` names."""
        return ExecutionRecord.from_dict(self.store.find_execution(ref))

    def lineage(self, ref: str) -> Lineage:
        """Upstream producers and downstream consumers of an execution or a ``datum://`` URI."""
        artifacts = self.to_arrow("artifacts").to_pylist()
        sha = parse_blob_uri(ref) if ref.startswith("datum://") else None
        if sha is not None:
            root, kind = ref, "datum"
            if not any(datum_id(r) == root for r in artifacts) and not self.store.has_blob(sha):
                raise StoreError(f"unknown datum {ref!r} in store {self.store.location}")
        else:
            root, kind = self._record(ref).id, "execution"
        table = self.store.read_dataset(
            "executions", columns=["execution_id", "counter", "step", "status"]
        )
        attrs = {
            row.pop("execution_id"): row for row in table.to_pylist() if row.get("execution_id")
        }
        return build_lineage(root, kind, artifacts, attrs, self._served())

    def _served(self) -> list[dict[str, Any]]:
        """The files deployment versions serve, one row each (for :meth:`lineage`)."""
        deployments = self.store.deployments
        return [
            {**file, "deployment": name, "version": version, "status": data.get("status")}
            for name in deployments.names()
            for version in deployments.version_names(name)
            if (data := deployments.get(name, version)) is not None
            for file in data.get("files", ())
        ]
