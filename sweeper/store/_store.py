"""The :class:`Store` facade: one object that the execution, sweep and results layers use."""

from __future__ import annotations

import io
import json
import os
import posixpath
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeper.errors import StoreError
from sweeper.record import ExecutionRecord
from sweeper.status import Status

from . import _counter
from ._backend import Backend
from ._batch import ORDER, RowBuffer
from ._blobs import Blobs
from ._format import FORMAT, ID_COLUMNS, MARKER, SCHEMA_VERSION
from ._open import open_backend

# The modules that build and read Arrow tables are imported by the methods that use them:
# an execution actor opens its store, runs a step and writes execution.json without
# pyarrow (~0.3 s of imports in each of many actors); it loads with the first Parquet row.
if TYPE_CHECKING:
    import pyarrow as pa

    from ._deployments import Deployments
    from ._merge import MergeCounts


def _check_relpath(relpath: str) -> str:
    path = posixpath.normpath(relpath.replace("\\", "/"))
    if path.startswith("/") or path == ".." or path.startswith("../") or path == ".":
        raise ValueError(f"not a path inside the store: {relpath!r}")
    return path


def _check_id(kind: str, value: str) -> str:
    """``value`` when it can name a folder of the store, else ValueError naming it."""
    if not value or "/" in value or "\\" in value or value.startswith("."):
        raise ValueError(f"invalid {kind} id {value!r}")
    return value


class Store:
    """A sweeper store: datasets, blobs and execution folders under one root.

    Open with :meth:`open`; every method is safe to call from many processes (and, for an
    object store, many machines) at once. The store is the only code that knows its layout:
    everything else goes through the record-level methods of
    :class:`~sweeper.store.RecordStore`, which this class implements. Example::

        store = Store.open(".sweeper", create=True)
        sha, size = store.put_file(Path("model.pkl"))
        store.put_record(record, events)
        store.read_dataset("executions").to_pandas()
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.blobs = Blobs(backend)
        self._buffer: RowBuffer | None = None

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, location: str | os.PathLike[str], *, create: bool = False) -> Store:
        """Open the store at a local path or URI; ``create`` makes a new one if none is there."""
        backend = open_backend(location)
        where = backend.location
        raw = backend.read_bytes(MARKER)
        if raw is None:
            state = backend.root_state()
            if state == "nonempty":
                raise StoreError(f"{where} is not a sweeper store")
            if not create:
                raise StoreError(
                    f"no sweeper store at {where}: run a sweep/run first or pass --store"
                )
            marker = {"format": FORMAT, "schema_version": SCHEMA_VERSION}
            backend.write_bytes(MARKER, (json.dumps(marker) + "\n").encode())
            return cls(backend)
        try:
            marker = json.loads(raw)
        except ValueError:
            raise StoreError(f"{where} is not a sweeper store: {MARKER} is not JSON") from None
        if not isinstance(marker, dict) or marker.get("format") != FORMAT:
            raise StoreError(f"{where} is not a sweeper store")
        version = marker.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise StoreError(
                f"store {where} has schema_version {version!r}; this sweeper reads "
                f"version {SCHEMA_VERSION} and older: upgrade sweeper"
            )
        return cls(backend)

    @property
    def location(self) -> str:
        """The path or URI the store was opened with."""
        return self.backend.location

    @property
    def local_path(self) -> Path | None:
        """The store's folder when it is local, else None."""
        return self.backend.local_path

    def __repr__(self) -> str:
        return f"Store({self.location!r})"

    @property
    def deployments(self) -> Deployments:
        """The deployment versions and aliases kept here (see ``_deployments``)."""
        from ._deployments import Deployments

        return Deployments(self.backend)

    # -- counter and blobs -----------------------------------------------------------------

    def allocate_counter(self) -> int:
        """The next execution number of this store (see ``_counter`` for the guarantees)."""
        return _counter.allocate(self.backend, self._max_counter)

    def _max_counter(self, since: float | None = None) -> int:
        """The highest execution number the records hold (see ``_counter.recorded_max``),
        and the ``executions`` rows (read only when the dataset has parts: a new store's
        first number imports no Parquet reader)."""
        highest = _counter.recorded_max(self.backend, since)
        if self.backend.list_files("datasets/executions"):
            import pyarrow.compute as pc

            table = self.read_dataset("executions", columns=["counter"])
            if table.num_rows:
                highest = max(highest, int(pc.max(table["counter"]).as_py() or 0))
        return highest

    def put_file(self, path: str | os.PathLike[str]) -> tuple[str, int]:
        """Store a file's content once; (sha256, size)."""
        return self.blobs.put_file(Path(path))

    def put_bytes(self, data: bytes) -> str:
        """Store bytes once; their sha256."""
        return self.blobs.put_bytes(data)

    def has_blob(self, sha256: str) -> bool:
        """Whether a blob with this digest is stored."""
        return self.blobs.has(sha256)

    def fetch_blob(self, sha256: str, dest: str | os.PathLike[str]) -> None:
        """Copy a blob to a local file (StoreError when unknown or corrupt)."""
        self.blobs.fetch(sha256, Path(dest))

    def blob_local_path(self, sha256: str) -> Path | None:
        """The blob's own file, for a local store (read it, never write it)."""
        return self.blobs.local_path(sha256)

    # -- files -----------------------------------------------------------------------------

    def write_json(self, relpath: str, obj: Any, *, durable: bool = True) -> None:
        """Write JSON atomically at a path inside the store (see ``Backend.write_bytes``)."""
        text = json.dumps(obj, indent=2, default=str, sort_keys=False) + "\n"
        self.backend.write_bytes(_check_relpath(relpath), text.encode(), durable=durable)

    def read_json(self, relpath: str) -> Any | None:
        """The parsed JSON file, or None when it does not exist."""
        raw = self.backend.read_bytes(_check_relpath(relpath))
        return None if raw is None else json.loads(raw)

    def upload_file(self, local: str | os.PathLike[str], relpath: str) -> None:
        """Copy a local file into the store atomically."""
        self.backend.upload(Path(local), _check_relpath(relpath))

    def download_file(self, relpath: str, dest: str | os.PathLike[str]) -> None:
        """Copy a file of the store to a local path."""
        rel = _check_relpath(relpath)
        if not self.backend.exists(rel):
            raise StoreError(f"no {relpath} in store {self.location}")
        self.backend.download(rel, Path(dest))

    def read_text(self, relpath: str) -> str | None:
        """A text file's content, or None when it does not exist."""
        raw = self.backend.read_bytes(_check_relpath(relpath))
        return None if raw is None else raw.decode("utf-8", errors="replace")

    def open_text(self, relpath: str) -> io.StringIO:
        """A text file of the store, opened for reading (StoreError when missing)."""
        text = self.read_text(relpath)
        if text is None:
            raise StoreError(f"no {relpath} in store {self.location}")
        return io.StringIO(text)

    def exists(self, relpath: str) -> bool:
        """Whether a file exists at a path inside the store."""
        return self.backend.exists(_check_relpath(relpath))

    def execution_dir(self, execution_id: str) -> str:
        """The execution's folder, relative to the store root."""
        if not execution_id or "/" in execution_id or execution_id.startswith("."):
            raise ValueError(f"invalid execution id {execution_id!r}")
        return f"executions/{execution_id}"

    def execution_ids(self, *, since: str | None = None) -> list[str]:
        """The ids of the execution folders, sorted (ids sort by creation time).

        ``since`` keeps the ids that sort at or after it (e.g. the first characters of an id
        made at some time).
        """
        names = sorted(self.backend.list_dirs("executions"))
        return [n for n in names if since is None or n >= since]

    # -- records ---------------------------------------------------------------------------

    def record_json(self, execution_id: str) -> dict[str, Any] | None:
        """execution.json as stored, or None when it is missing or not a JSON object.

        An unfinished record is written without an fsync (see :meth:`put_record`): after a
        crash of the machine it may be left empty or cut, which reads as no record at all.
        """
        try:
            data = self.read_json(f"{self.execution_dir(execution_id)}/execution.json")
        except (ValueError, UnicodeDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def put_record(self, record: ExecutionRecord, events: Iterable[Mapping[str, Any]] = ()) -> None:
        """Write the record's execution.json; once it is final, its dataset rows too.

        The rows (metrics from ``events``, artifacts, then the executions row) are written
        once, at the end, so an execution counted in the datasets has ended. Only a final
        record is fsynced: an unfinished one (``started``) is atomic for readers and
        survives a ``kill -9`` of any process, but a crash of the machine may take it, and
        then the execution is settled as one that wrote no record (its runner's plan is
        recorded as ``crashed``, a sweep's resume runs the trial again).
        """
        if record.is_final:
            self.write_execution(record.to_dict(), events)
        else:
            self.write_json(
                f"{self.execution_dir(record.id)}/execution.json", record.to_dict(), durable=False
            )

    def get_record(self, execution_id: str) -> ExecutionRecord | None:
        """The execution's record, or None when none was ever written."""
        data = self.record_json(execution_id)
        if data is None:
            return None
        # The id is the folder's name; an old or hand-made record may not repeat it.
        return ExecutionRecord.from_dict(data if "id" in data else {"id": execution_id, **data})

    def complete_rows(self, record: ExecutionRecord, events: Iterable[Mapping[str, Any]]) -> None:
        """Write the rows of a final record that a killed writer left out (never twice).

        execution.json is left as it is; see :meth:`write_execution` with ``missing_only``.
        """
        self.write_execution(record.to_dict(), events, missing_only=True)

    # -- logs ------------------------------------------------------------------------------

    def _log_relpath(self, execution_id: str) -> str:
        return f"{self.execution_dir(execution_id)}/logs.txt"

    def log_file(self, execution_id: str) -> Path | None:
        """The local ``logs.txt`` of an execution to append to (its folder made).

        None for a remote store: write the log to a scratch file and :meth:`put_log` it.
        """
        local = self.local_path
        if local is None:
            return None
        path = local / self._log_relpath(execution_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def put_log(self, execution_id: str, local: Path) -> None:
        """Store a log written to a local scratch file as the execution's ``logs.txt``."""
        self.upload_file(local, self._log_relpath(execution_id))

    def read_log(self, execution_id: str, *, tail_bytes: int | None = None) -> str | None:
        """The execution's log, or None when it has none.

        ``tail_bytes`` keeps only the end of the log, from its first whole line; a local log
        is then read with a seek instead of whole.
        """
        relpath = self._log_relpath(execution_id)
        local = self.local_path
        if tail_bytes is None or local is None:
            text = self.read_text(relpath)
            return text if text is None or tail_bytes is None else text[-tail_bytes:]
        try:
            with open(local / relpath, "rb") as handle:
                size = handle.seek(0, 2)
                handle.seek(max(0, size - tail_bytes))
                data = handle.read()
        except FileNotFoundError:
            return None
        text = data.decode("utf-8", errors="replace")
        # a tail cut mid-line would start with half a line
        return text.split("\n", 1)[1] if size > tail_bytes and "\n" in text else text

    def scratch_dir(self) -> Path:
        """Where work folders and caches go: ``tmp/`` in a local store, else the temp dir.

        Inside a local store they share its file system, so outputs are stored by a rename
        or a link; a remote store has no local folder of its own.
        """
        local = self.local_path
        if local is not None:
            return local / "tmp"
        return Path(tempfile.gettempdir()) / "sweeper-scratch"

    # -- sweeps and pipeline runs ----------------------------------------------------------

    def _sweep_dir(self, sweep_id: str) -> str:
        return f"sweeps/{_check_id('sweep', sweep_id)}"

    def get_sweep(self, sweep_id: str) -> dict[str, Any] | None:
        """The sweep's saved state (``sweep.json``), or None when there is none."""
        data = self.read_json(f"{self._sweep_dir(sweep_id)}/sweep.json")
        return data if isinstance(data, dict) else None

    def put_sweep(self, sweep_id: str, data: Mapping[str, Any]) -> None:
        """Save the sweep's state (``sweep.json``), atomically."""
        self.write_json(f"{self._sweep_dir(sweep_id)}/sweep.json", dict(data))

    def fetch_sweep_journal(self, sweep_id: str, dest: str | os.PathLike[str]) -> bool:
        """Copy the sweep's journal (an object store keeps a copy of the study) to ``dest``.

        False, and ``dest`` untouched, when the store holds none.
        """
        relpath = f"{self._sweep_dir(sweep_id)}/optuna.journal"
        if not self.exists(relpath):
            return False
        self.download_file(relpath, dest)
        return True

    def put_sweep_journal(self, sweep_id: str, local: str | os.PathLike[str]) -> None:
        """Save a local journal file as the sweep's journal in the store."""
        self.upload_file(local, f"{self._sweep_dir(sweep_id)}/optuna.journal")

    def sweep_journal(self, sweep_id: str) -> Path:
        """The sweep's Optuna journal file (its folder made); a local store only.

        Optuna's journal needs a local file with working locks: for a remote store the
        study needs a database, and the StoreError says so.
        """
        local = self.local_path
        if local is None:
            raise StoreError(
                f"the store {self.location} is not a local folder: give the sweep's study a "
                "database with --storage (e.g. postgresql://...) so that it survives the driver"
            )
        path = local / self._sweep_dir(sweep_id) / "optuna.journal"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def latest_sweep(self, *, unfinished: bool = False) -> str | None:
        """The id of the sweep created last (with ``unfinished``, the last not complete).

        None when the store has no such sweep. Works the same for every backend.
        """
        candidates = []
        for name in self.backend.list_dirs("sweeps"):
            try:
                data = self.get_sweep(name)
            except (ValueError, UnicodeDecodeError):  # a folder that is no sweep's, a bad file
                continue
            if data is None or (unfinished and data.get("status") == Status.COMPLETE):
                continue
            candidates.append(
                (str(data.get("created_at") or ""), str(data.get("sweep_id") or name))
            )
        return max(candidates)[1] if candidates else None

    def _pipeline_run_path(self, run_id: str) -> str:
        return f"pipelines/{_check_id('pipeline run', run_id)}/run.json"

    def get_pipeline_run(self, run_id: str) -> dict[str, Any] | None:
        """The pipeline run's saved state (``run.json``), or None when there is none."""
        data = self.read_json(self._pipeline_run_path(run_id))
        return data if isinstance(data, dict) else None

    def put_pipeline_run(self, run_id: str, data: Mapping[str, Any]) -> None:
        """Save the pipeline run's state (``run.json``), atomically."""
        self.write_json(self._pipeline_run_path(run_id), dict(data))

    # -- datasets --------------------------------------------------------------------------

    def write_execution(
        self,
        data: Mapping[str, Any],
        events: Iterable[Mapping[str, Any]],
        *,
        missing_only: bool = False,
    ) -> None:
        """Record one execution: execution.json, then its metrics, artifacts and executions rows.

        ``data`` is the record in its stored form (:meth:`ExecutionRecord.to_dict`): what this
        method writes is that JSON and the rows made from it, key for key.

        The executions row goes last, so an execution visible there has its other rows too.
        With ``missing_only`` (finishing the recording of an execution whose writer was
        killed midway) execution.json is left as it is and only the datasets that have no
        row of the execution yet are written, so nothing is written twice.
        """
        from ._datasets import DATASET, version_rows
        from ._rows import artifact_rows, execution_row, metric_rows

        execution_id = str(data["id"])
        if missing_only:
            if self.has_rows("executions", execution_id):
                return
        else:
            self.write_json(f"{self.execution_dir(execution_id)}/execution.json", dict(data))
        rows: dict[str, list[dict[str, Any]]] = {}
        # Checked before ``events`` is read: a recovery passes them lazily, from the log.
        if not (missing_only and self.has_rows("metrics", execution_id)):
            rows["metrics"] = metric_rows(execution_id, events)
        artifacts = artifact_rows(data)
        if artifacts and not (missing_only and self.has_rows("artifacts", execution_id)):
            rows["artifacts"] = artifacts
        versions = version_rows(
            execution_id, data.get("ended_at"), data.get("dataset_versions") or []
        )
        if versions and not (missing_only and self.has_rows(DATASET, execution_id)):
            rows[DATASET] = versions
        rows["executions"] = [execution_row(data)]
        if self._buffer is not None and not missing_only:
            self._buffer.add(rows)  # execution.json is written: the rows can wait
            return
        for dataset in ORDER:
            if rows.get(dataset):
                self._write_part(dataset, rows[dataset])

    def buffer_rows(self, interval_s: float) -> None:
        """Hold the rows of finished executions and write them ``interval_s`` s after the first.

        For a writer that finishes many executions (a sweep's actor): one part per dataset
        per interval instead of per execution. Call :meth:`flush_rows` before the process
        ends; rows a killed process held are rebuilt from ``execution.json`` by recovery.
        """
        if self._buffer is None:
            self._buffer = RowBuffer(self._write_part, interval_s)
        else:
            self._buffer.interval_s = interval_s

    def flush_rows(self) -> int:
        """Write the rows :meth:`buffer_rows` holds now; how many executions they were."""
        if self._buffer is None:
            return 0
        pending = self._buffer.pending
        self._buffer.flush()
        return pending

    def _write_part(self, dataset: str, rows: Sequence[Mapping[str, Any]]) -> None:
        from ._parts import Parts
        from ._rows import metrics_table

        if dataset == "metrics":
            Parts(self.backend, dataset).write(metrics_table(rows))
        else:
            self.write_rows(dataset, rows)

    def without_rows(self, execution_ids: Iterable[str]) -> list[str]:
        """The ids, of those given, that have no ``executions`` row (one read of the dataset)."""
        wanted = list(dict.fromkeys(execution_ids))
        if not wanted:
            return []
        present = set(
            self.read_dataset("executions", columns=["execution_id"])["execution_id"].to_pylist()
        )
        return [i for i in wanted if i not in present]

    def has_rows(self, dataset: str, execution_id: str) -> bool:
        """Whether a dataset holds any row of an execution."""
        import pyarrow.compute as pc

        table = self.read_dataset(dataset, columns=["execution_id"])
        if not table.num_rows:
            return False
        return bool(pc.any(pc.equal(table["execution_id"], execution_id)).as_py())

    def write_rows(self, dataset: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append rows to a dataset as one new part (``updated_at`` defaults to now)."""
        from ._parts import Parts, check_dataset_name
        from ._rows import rows_to_table

        check_dataset_name(dataset)
        if not rows:
            return
        if dataset in ID_COLUMNS:
            now = datetime.now(timezone.utc)
            rows = [r if r.get("updated_at") else {**r, "updated_at": now} for r in rows]
        Parts(self.backend, dataset).write(rows_to_table(dataset, list(rows)))

    def read_dataset(self, name: str, columns: list[str] | None = None) -> pa.Table:
        """Every row of a dataset, damaged parts reported and skipped."""
        from ._parts import Parts

        return Parts(self.backend, name).table(columns)

    def datasets(self) -> list[str]:
        """The datasets this store has (the standard ones, plus any written)."""
        from ._schema import SCHEMAS

        return sorted(set(SCHEMAS) | set(self.backend.list_dirs("datasets")))

    def damaged_parts(self) -> list[str]:
        """Paths (relative to the root) of part files that cannot be read."""
        from ._parts import Parts

        damaged = []
        for name in self.datasets():
            parts = Parts(self.backend, name)
            damaged += [parts.rel(n) for n in parts.read(report=False).damaged]
        return damaged

    def doctor(self, quarantine: bool = False) -> list[str]:
        """The damaged part files; with ``quarantine``, moved to ``quarantine/`` too."""
        damaged = self.damaged_parts()
        if quarantine:
            for rel in damaged:
                self.backend.move(rel, f"quarantine/{rel}")
        return damaged

    def compact(self, dataset: str | None = None) -> int:
        """Merge small parts (of one dataset, or all); the number of part files removed."""
        from ._compact import compact_dataset
        from ._parts import check_dataset_name

        names = [check_dataset_name(dataset)] if dataset else self.datasets()
        return sum(compact_dataset(self.backend, name) for name in names)

    def merge(self, source: Store) -> MergeCounts:
        """Bring in what this store lacks of ``source``: files, then dataset rows by key.

        Merging the same source twice adds nothing the second time (see ``_merge``).
        """
        from ._merge import merge as merge_stores

        return merge_stores(source.backend, self.backend, source.datasets())

    # -- lookups ---------------------------------------------------------------------------

    def find_execution(self, ref: str) -> dict[str, Any]:
        """The record of an execution: full id, unique prefix, ``#12`` or ``latest``."""
        from . import _lookup

        return _lookup.find_execution(self, ref)

    def find_completed(self, spec_hash: str) -> dict[str, Any] | None:
        """The latest ``complete`` execution with this spec hash (for ``--reuse``)."""
        from . import _lookup

        return _lookup.latest_completed(self, [spec_hash]).get(spec_hash)

    def latest_records_by_spec_hash(
        self, spec_hashes: Iterable[str] | None = None
    ) -> dict[str, dict[str, Any]]:
        """For each spec hash (all when None), the record of its latest complete execution."""
        from . import _lookup

        return _lookup.latest_completed(self, spec_hashes)


if TYPE_CHECKING:
    from ._protocol import RecordStore

    # mypy checks here that Store keeps every method of the contract, with its types.
    _satisfies_protocol: type[RecordStore] = Store
