from __future__ import annotations

import pytest

from sweeper.store import Store
from sweeper.store._compact import compact_dataset
from sweeper.store._parts import Parts
from tests.store.store_workers import events, make_record


def _view(store: Store, dataset: str) -> list[tuple]:
    table = store.read_dataset(dataset)
    return sorted(tuple(str(v) for v in row.values()) for row in table.to_pylist())


def _fill(store: Store, count: int) -> None:
    for number in range(count):
        params = {"lr": 1 if number % 2 else 0.5, f"only{number % 3}": number}
        store.write_execution(make_record(number, parameters=params), events(2))


def test_compact_preserves_what_readers_see(store: Store) -> None:
    _fill(store, 6)
    before = {name: _view(store, name) for name in ("executions", "metrics")}
    columns = store.read_dataset("executions").column_names
    assert store.compact() == 12
    assert {name: _view(store, name) for name in ("executions", "metrics")} == before
    assert store.read_dataset("executions").column_names == columns
    assert len(Parts(store.backend, "executions").names()) == 1
    assert store.compact("executions") == 0


class Crash(Exception):
    pass


def _crash() -> None:
    raise Crash("killed before the delete")


def test_crash_between_publish_and_delete(store: Store) -> None:
    _fill(store, 4)
    before = _view(store, "executions")
    with pytest.raises(Crash, match="killed before the delete"):
        compact_dataset(store.backend, "executions", before_delete=_crash)
    assert len(Parts(store.backend, "executions").names()) == 5
    assert _view(store, "executions") == before
    # A later compaction merges the new parts and cleans the leftovers, even if it too dies.
    store.write_execution(make_record(99), [])
    after_write = _view(store, "executions")
    with pytest.raises(Crash, match="killed before the delete"):
        compact_dataset(store.backend, "executions", before_delete=_crash)
    assert _view(store, "executions") == after_write
    assert store.compact("executions") == 6  # the leftovers; the newest merged part stays
    assert len(Parts(store.backend, "executions").names()) == 1
    assert _view(store, "executions") == after_write


def test_readers_during_compaction(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    _fill(store, 5)
    before = _view(store, "executions")
    seen: list[list[tuple]] = []
    compact_dataset(
        store.backend, "executions", before_delete=lambda: seen.append(_view(store, "executions"))
    )
    assert seen == [before]

    # A reader that listed the parts just before a compaction finds them gone and lists again.
    _fill(store, 3)
    before = _view(store, "executions")
    parts = Parts(store.backend, "executions")
    stale = parts.names()
    store.compact("executions")
    real_names = Parts.names
    calls = iter([stale])
    monkeypatch.setattr(Parts, "names", lambda self: next(calls, None) or real_names(self))
    assert _view(store, "executions") == before


def test_crash_between_deletes_keeps_leftovers_hidden(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(store, 3)
    with pytest.raises(Crash, match="killed before the delete"):
        compact_dataset(store.backend, "executions", before_delete=_crash)
    store.write_execution(make_record(50), [])
    expected = _view(store, "executions")
    real_delete = store.backend.delete
    deleted: list[str] = []

    def delete_once(rel: str) -> None:
        if deleted:
            raise Crash("killed during the deletes")
        deleted.append(rel)
        real_delete(rel)

    monkeypatch.setattr(store.backend, "delete", delete_once)
    with pytest.raises(Crash, match="killed during the deletes"):
        store.compact("executions")
    assert len(deleted) == 1
    monkeypatch.undo()
    assert _view(store, "executions") == expected
    store.compact("executions")
    assert len(Parts(store.backend, "executions").names()) == 1
    assert _view(store, "executions") == expected
