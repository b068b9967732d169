"""Find executions by reference: full id, unique id prefix, ``#<counter>`` or ``latest``.

The lookups read a store through :class:`Executions`, the few methods they need, so that
this module needs nothing of the :class:`~sweeper.store.Store` that calls it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, Protocol

import pyarrow as pa

from sweeper.errors import StoreError
from sweeper.status import Status

_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
_INDEX_COLUMNS = ["execution_id", "counter", "status", "spec_hash", "created_at"]


class Executions(Protocol):
    """What a lookup reads of a store (:class:`~sweeper.store.Store` has it)."""

    @property
    def location(self) -> str:
        """The store's path or URI, for messages."""
        ...

    def read_dataset(self, name: str, columns: list[str] | None = None) -> pa.Table:
        """Every row of a dataset (here: ``executions``)."""
        ...

    def execution_ids(self, *, since: str | None = None) -> list[str]:
        """The ids of the execution folders, sorted."""
        ...

    def record_json(self, execution_id: str) -> dict[str, Any] | None:
        """``execution.json`` as stored, or None when it is missing or unreadable."""
        ...


def _index(store: Executions) -> pa.Table:
    return store.read_dataset("executions", columns=_INDEX_COLUMNS)


def _load(store: Executions, execution_id: str) -> dict[str, Any]:
    record = store.record_json(execution_id)
    if record is None:
        raise StoreError(
            f"execution {execution_id} has no readable execution.json in {store.location}"
        )
    return record


def _unknown(store: Executions, ref: str, why: str = "") -> StoreError:
    return StoreError(f"unknown execution {ref!r} in store {store.location}{why}")


def find_execution(store: Executions, ref: str) -> dict[str, Any]:
    """The record of the execution ``ref`` names (see the module doc)."""
    ref = str(ref).strip()
    if ref == "latest":
        index = _index(store)
        if index.num_rows == 0:
            raise _unknown(store, ref, ": the store has no executions yet")
        rows = index.select(["execution_id", "counter", "created_at"]).to_pylist()
        latest = max(rows, key=lambda r: (r["counter"] or 0, r["created_at"] or 0))
        return _load(store, latest["execution_id"])
    if ref.startswith("#"):
        try:
            number = int(ref[1:])
        except ValueError:
            raise _unknown(store, ref, ": a counter looks like #12") from None
        import pyarrow.compute as pc

        index = _index(store)
        ids = _unique(index.filter(pc.equal(index["counter"], number))["execution_id"].to_pylist())
        if not ids:
            raise _unknown(store, ref)
        return _load(store, ids[-1])
    if not _ID.match(ref):
        raise _unknown(store, ref)
    record = store.record_json(ref)
    if record is not None:
        return record
    return _load(store, _resolve_prefix(store, ref))


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def _resolve_prefix(store: Executions, prefix: str) -> str:
    index = _index(store)
    ids = _unique(
        i for i in index["execution_id"].to_pylist() if i is not None and i.startswith(prefix)
    )
    if not ids:
        # Records whose dataset row was lost (a damaged part) still have their folder.
        ids = [d for d in store.execution_ids(since=prefix) if d.startswith(prefix)]
    if not ids:
        raise _unknown(store, prefix)
    if len(ids) > 1:
        shown = ", ".join(sorted(ids)[:5]) + (", ..." if len(ids) > 5 else "")
        raise StoreError(f"execution prefix {prefix!r} is ambiguous: it matches {shown}")
    return ids[0]


def latest_completed(
    store: Executions, spec_hashes: Iterable[str] | None = None
) -> dict[str, dict[str, Any]]:
    """For each spec hash (all when None), the record of its latest ``complete`` execution."""
    import pyarrow.compute as pc

    index = _index(store)
    mask = pc.equal(index["status"], Status.COMPLETE.value)
    if spec_hashes is not None:
        mask = pc.and_(mask, pc.is_in(index["spec_hash"], pa.array(list(spec_hashes), pa.string())))
    never = datetime.min.replace(tzinfo=timezone.utc)
    best: dict[str, tuple[tuple[datetime, int], str]] = {}
    for row in index.filter(mask).to_pylist():
        spec_hash = row["spec_hash"]
        if not spec_hash:
            continue
        key = (row["created_at"] or never, row["counter"] or 0)
        if spec_hash not in best or key > best[spec_hash][0]:
            best[spec_hash] = (key, row["execution_id"])
    return {h: _load(store, execution_id) for h, (_, execution_id) in best.items()}
