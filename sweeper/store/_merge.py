"""Bring another store's executions, sweeps and pipeline runs into this one.

Used by ``sweep jobs pull`` (a submitted job's store on the head, unpacked here) and good
for any two stores. Merging twice adds nothing the second time:

* files (``executions/``, ``blobs/``, ``sweeps/``, ``pipelines/``) are copied only where
  this store has none at that path: blobs are named by content and an ended execution's
  files no longer change;
* dataset rows are added per key, not per part file (part names differ once either side
  compacts): rows of an execution this store has no rows of, and status rows (``sweeps``,
  ``pipeline_runs``) whose id and ``updated_at`` it does not have yet.

Execution numbers (``#12``) are kept as the source store gave them, so they may repeat
numbers of this store; ids stay unique.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from ._backend import Backend
from ._format import ID_COLUMNS
from ._parts import Parts

#: The folders whose files are copied as they are (datasets are merged by rows).
FILE_FOLDERS = ("blobs", "executions", "sweeps", "pipelines")


@dataclass
class MergeCounts:
    """What a merge added."""

    files: int = 0
    executions: int = 0
    sweeps: int = 0


def _walk(backend: Backend, rel_dir: str) -> list[str]:
    """Every committed file under ``rel_dir``, as paths relative to the store root."""
    found = [f"{rel_dir}/{f.name}" for f in backend.list_files(rel_dir)]
    for name in backend.list_dirs(rel_dir):
        found += _walk(backend, f"{rel_dir}/{name}")
    return found


def _copy(source: Backend, dest: Backend, rel: str) -> None:
    with (
        source.filesystem.open_input_stream(source.fs_path(rel)) as src,
        dest.atomic_writer(rel) as out,
    ):
        while chunk := src.read(8 << 20):
            out.write(chunk)


def _keys(table: pa.Table, dataset: str) -> list[tuple[object, ...]] | None:
    """The key of each row that says whether a row is already there (None: not mergeable)."""
    if dataset in ID_COLUMNS:
        id_column = ID_COLUMNS[dataset]
        if id_column not in table.column_names or "updated_at" not in table.column_names:
            return None
        return list(
            zip(
                table[id_column].to_pylist(),
                [str(v) for v in table["updated_at"].to_pylist()],
                strict=True,
            )
        )
    if "execution_id" not in table.column_names:
        return None
    return [(v,) for v in table["execution_id"].to_pylist()]


def _merge_rows(source: Backend, dest: Backend, dataset: str) -> pa.Table | None:
    """Add the rows of one dataset this store lacks; the rows added (None when none)."""
    incoming = Parts(source, dataset).table()
    if not incoming.num_rows:
        return None
    incoming_keys = _keys(incoming, dataset)
    if incoming_keys is None:
        return None
    parts = Parts(dest, dataset)
    present = parts.table()
    present_keys = _keys(present, dataset) if present.num_rows else []
    if dataset in ID_COLUMNS:
        have = set(present_keys or [])
        mask = [key not in have for key in incoming_keys]
    else:
        # rows of one execution are written together: an execution with rows here is whole
        have_ids = {key[0] for key in present_keys or []}
        mask = [key[0] not in have_ids for key in incoming_keys]
    added = incoming.filter(pa.array(mask, type=pa.bool_()))
    if not added.num_rows:
        return None
    parts.write(added)
    return added


def merge(source: Backend, dest: Backend, dataset_names: list[str]) -> MergeCounts:
    """Copy what ``dest`` lacks of ``source`` (see the module docstring)."""
    counts = MergeCounts()
    for folder in FILE_FOLDERS:
        for rel in _walk(source, folder):
            if not dest.exists(rel):
                _copy(source, dest, rel)
                counts.files += 1
    # executions last: a reader that sees an execution's row finds its other rows too
    ordered = sorted(dataset_names, key=lambda name: name == "executions")
    for name in ordered:
        added = _merge_rows(source, dest, name)
        if added is None:
            continue
        if name == "executions":
            counts.executions = len(set(added["execution_id"].to_pylist()))
        elif name == "sweeps":
            counts.sweeps = len(set(added["sweep_id"].to_pylist()))
    return counts
