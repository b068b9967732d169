"""The immutable part files of one dataset: naming, writing and consistent reading.

A dataset is the folder ``datasets/<name>/``; each append is a new file
``part-<utc time>-<uuid>.parquet``, published atomically (see ``_backend``). Nothing ever
rewrites a part. Compaction adds a merged part whose Parquet metadata lists the parts it
replaces (``sweeper.replaces``), and only then deletes those; a reader drops every part
that a part it read lists as replaced, so it sees each row exactly once whether it ran
before, during or after a compaction. A part that disappears between listing and reading
was compacted away, so the reader lists again.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq

from ._backend import Backend
from ._schema import empty_table, schema_for
from ._unify import concat

log = logging.getLogger(__name__)

REPLACES_KEY = b"sweeper.replaces"
_PART = re.compile(r"^part-(?P<time>[0-9TZ]+)-(?P<uid>[0-9a-f]+)\.parquet$")
_DATASET = re.compile(r"^[a-z][a-z0-9_]*$")
_READ_ATTEMPTS = 5
_THREADS = 16


class DamagedPartWarning(UserWarning):
    """A part file of a dataset cannot be read and was skipped."""


def check_dataset_name(name: str) -> str:
    """The name, or ValueError when it cannot be a dataset folder."""
    if not _DATASET.match(name):
        raise ValueError(f"invalid dataset name {name!r}")
    return name


def dataset_dir(name: str) -> str:
    """The dataset's folder, relative to the store root."""
    return f"datasets/{check_dataset_name(name)}"


def new_part_name(time_text: str | None = None) -> str:
    """A fresh, unique part name; names sort in write order (by UTC time, then at random)."""
    if time_text is None:
        time_text = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return f"part-{time_text}-{uuid.uuid4().hex}.parquet"


def part_time(name: str) -> str | None:
    """The time component of a part name."""
    match = _PART.match(name)
    return match.group("time") if match else None


def is_part(name: str) -> bool:
    """Whether a file name is a committed part (temporary files never are)."""
    return _PART.match(name) is not None


def table_to_bytes(table: pa.Table, replaces: list[str] | None = None) -> bytes:
    """The Parquet file of a table, with the list of parts it replaces in its metadata."""
    metadata = {REPLACES_KEY: json.dumps(sorted(replaces)).encode()} if replaces else None
    sink = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata(metadata), sink, compression="zstd")
    return bytes(sink.getvalue().to_pybytes())


@dataclass
class PartRead:
    """The outcome of reading one part file."""

    name: str
    table: pa.Table | None = None
    replaces: list[str] = field(default_factory=list)
    gone: bool = False
    error: str | None = None


@dataclass
class DatasetRead:
    """What a reader saw: the live parts' tables, in order, and the damaged parts."""

    dataset: str
    parts: list[PartRead]
    damaged: list[str]
    replaced: set[str]

    @property
    def live(self) -> list[PartRead]:
        """Readable parts no other part replaces, in name (write) order."""
        return [p for p in self.parts if p.table is not None and p.name not in self.replaced]


class Parts:
    """The parts of one dataset in one store."""

    def __init__(self, backend: Backend, dataset: str) -> None:
        self.backend = backend
        self.dataset = dataset
        self.dir = dataset_dir(dataset)

    def rel(self, name: str) -> str:
        """A part's path relative to the store root."""
        return f"{self.dir}/{name}"

    def names(self) -> list[str]:
        """Committed part names in write order."""
        return sorted(f.name for f in self.backend.list_files(self.dir) if is_part(f.name))

    def write(
        self, table: pa.Table, *, name: str | None = None, replaces: list[str] | None = None
    ) -> str:
        """Publish a new part atomically; its name."""
        name = name or new_part_name()
        self.backend.write_bytes(self.rel(name), table_to_bytes(table, replaces))
        return name

    def read_part(self, name: str, columns: list[str] | None = None) -> PartRead:
        """Read one part; a vanished part is ``gone``, an unreadable one has an ``error``."""
        data = self.backend.read_bytes(self.rel(name))
        if data is None:
            return PartRead(name, gone=True)
        try:
            parquet = pq.ParquetFile(pa.BufferReader(data))
            wanted = None
            if columns is not None:
                present = set(parquet.schema_arrow.names)
                wanted = [c for c in columns if c in present]
            # Decoded on this thread (parts are read in parallel already): on Arrow's pool a
            # thread can let go of ``data`` (Python's) after the read returned, which needs the
            # interpreter and aborts the process if that is shutting down by then.
            table = parquet.read(columns=wanted, use_threads=False)
            raw = (parquet.schema_arrow.metadata or {}).get(REPLACES_KEY)
            replaces = json.loads(raw) if raw else []
        except Exception as exc:  # noqa: BLE001 - any decoding failure means a damaged part
            return PartRead(name, error=f"{type(exc).__name__}: {exc}")
        return PartRead(name, table=table, replaces=replaces)

    def read(self, columns: list[str] | None = None, *, report: bool = True) -> DatasetRead:
        """A consistent snapshot of the dataset (see the module doc)."""
        result: DatasetRead | None = None
        for _ in range(_READ_ATTEMPTS):
            names = self.names()
            with ThreadPoolExecutor(max_workers=max(1, min(_THREADS, len(names)))) as pool:
                parts = list(pool.map(lambda n: self.read_part(n, columns), names))
            replaced = {r for p in parts for r in p.replaces}
            result = DatasetRead(
                self.dataset,
                parts,
                damaged=[p.name for p in parts if p.error and p.name not in replaced],
                replaced=replaced,
            )
            if not any(p.gone and p.name not in replaced for p in parts):
                break
        assert result is not None
        if report:
            for part in result.parts:
                if part.error and part.name not in result.replaced:
                    self._report(part)
        return result

    def _report(self, part: PartRead) -> None:
        where = f"{self.backend.location}/{self.rel(part.name)}"
        message = f"skipping damaged part {where}: {part.error}"
        log.info(message)  # the warning below is what callers see (and the CLI prints)
        warnings.warn(message, DamagedPartWarning, stacklevel=4)

    def table(self, columns: list[str] | None = None) -> pa.Table:
        """Every live row, under one unified schema (the base schema when there are none)."""
        snapshot = self.read(columns)
        base = schema_for(self.dataset)
        if columns is not None:
            base = pa.schema([f for f in base if f.name in columns])
        tables = [p.table for p in snapshot.live if p.table is not None]
        if not tables:
            return empty_table(base)
        return concat(tables, base)
