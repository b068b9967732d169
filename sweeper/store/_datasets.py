"""Dataset versions: named, immutable sets of output files (``dataset://NAME/VERSION``).

An execution makes a version by listing it under ``valohai.dataset-versions`` in its
output properties; its record keeps what it made (``dataset_versions``: the URI and the
files), and the store turns that into ``dataset_versions`` rows (one per file) with the
execution's other rows, so a version appears when the execution that made it has ended,
and recovery after a ``kill -9`` rebuilds its rows from ``execution.json`` as it rebuilds
the others.

A version belongs to the first execution that recorded it: the executor refuses a version
that already exists, and a reader keeps only the rows of the version's first maker (the
earliest ``created_at``, then the smaller execution id), so two executions that end at
the same moment with the same version name cannot mix their files.

Everything here reads and writes through :class:`~sweeper.store.RecordStore`'s
``read_dataset``, so it works the same on a local store, an object store, and on a node
that reaches the driver's store through Ray.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pyarrow as pa

#: The Parquet dataset that holds the versions' files.
DATASET = "dataset_versions"
#: The version a ``dataset://NAME/latest`` input means: the newest one of NAME.
LATEST = "latest"

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_VERSION_URI = re.compile(rf"^dataset://({_NAME})/({_NAME})/?$")


class _Readable(Protocol):
    def read_dataset(self, name: str, columns: list[str] | None = None) -> pa.Table: ...


def split_version_uri(uri: Any) -> tuple[str, str] | None:
    """``(name, version)`` of ``dataset://NAME/VERSION``, or None for anything else.

    >>> split_version_uri("dataset://images/v2"), split_version_uri("dataset://images")
    (('images', 'v2'), None)
    """
    match = _VERSION_URI.match(uri.strip()) if isinstance(uri, str) else None
    return (match.group(1), match.group(2)) if match else None


def version_uri(name: str, version: str) -> str:
    """``dataset://NAME/VERSION``."""
    return f"dataset://{name}/{version}"


@dataclass(frozen=True)
class DatasetFile:
    """One file of a version: its path in the version, content and size."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class DatasetVersion:
    """One version of a dataset, its files, and the execution that made it."""

    name: str
    version: str
    made_by: str
    created_at: datetime | None
    files: tuple[DatasetFile, ...]

    @property
    def uri(self) -> str:
        """``dataset://NAME/VERSION``."""
        return version_uri(self.name, self.version)

    @property
    def size(self) -> int:
        """The bytes of all its files."""
        return sum(f.size for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (``sweep datasets --json``)."""
        return {
            "uri": self.uri,
            "name": self.name,
            "version": self.version,
            "made_by": self.made_by,
            "created_at": None if self.created_at is None else self.created_at.isoformat(),
            "size": self.size,
            "files": [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in self.files],
        }


def version_rows(
    execution_id: str, ended_at: Any, made: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The ``dataset_versions`` rows of the versions an execution made (its record's
    ``dataset_versions``): one per file of each."""
    return [
        {
            "name": version["name"],
            "version": version["version"],
            "file": item["path"],
            "sha256": item["sha256"],
            "size": item["size"],
            "execution_id": execution_id,
            "created_at": ended_at,
        }
        for version in made
        for item in version.get("files") or []
    ]


def dataset_versions(store: _Readable, name: str | None = None) -> list[DatasetVersion]:
    """Every version (of dataset ``name``), by name, then oldest first."""
    rows = store.read_dataset(DATASET).to_pylist()
    by_version: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        if name is None or row["name"] == name:
            by_version.setdefault((row["name"], row["version"]), []).append(row)
    versions = [_version(key, found) for key, found in by_version.items()]
    return sorted(versions, key=lambda v: (v.name, *_age(v)))


def _age(version: DatasetVersion) -> tuple[str, str]:
    created = "" if version.created_at is None else version.created_at.isoformat()
    return created, version.version


def _version(key: tuple[str, str], rows: list[dict[str, Any]]) -> DatasetVersion:
    """A version from its rows: those of its first maker, each file once."""
    first = min(rows, key=lambda r: (_time_key(r["created_at"]), r["execution_id"]))
    files: dict[str, DatasetFile] = {}
    for row in rows:
        if row["execution_id"] == first["execution_id"] and row["file"] not in files:
            files[row["file"]] = DatasetFile(row["file"], row["sha256"], int(row["size"] or 0))
    return DatasetVersion(
        key[0],
        key[1],
        first["execution_id"],
        first["created_at"],
        tuple(sorted(files.values(), key=lambda f: f.path)),
    )


def _time_key(value: datetime | None) -> str:
    return "~" if value is None else value.isoformat()


def find_version(store: _Readable, name: str, version: str) -> DatasetVersion | None:
    """Version ``version`` of dataset ``name`` (``latest``: its newest), or None."""
    versions = dataset_versions(store, name)
    if version == LATEST:
        return versions[-1] if versions else None
    return next((v for v in versions if v.version == version), None)


__all__ = [
    "DATASET",
    "LATEST",
    "DatasetFile",
    "DatasetVersion",
    "dataset_versions",
    "find_version",
    "split_version_uri",
    "version_rows",
    "version_uri",
]
