from __future__ import annotations

import pytest

from sweeper.errors import StoreError
from sweeper.store import Store
from sweeper.store._parts import Parts
from tests.store.store_workers import make_record


@pytest.fixture
def filled(store: Store) -> tuple[Store, list[dict]]:
    records = []
    for number in range(1, 4):
        record = make_record(number, id=f"01JAB{number}XYZ", spec_hash="same")
        store.write_execution(record, [])
        records.append(record)
    failed = make_record(4, id="01JCD4", spec_hash="same", status="error")
    store.write_execution(failed, [])
    return store, [*records, failed]


def test_find_by_id_prefix_counter_latest(filled: tuple[Store, list[dict]]) -> None:
    store, records = filled
    assert store.find_execution(records[1]["id"]) == records[1]
    assert store.find_execution("01JAB2")["id"] == records[1]["id"]
    assert store.find_execution("01JC")["id"] == "01JCD4"
    assert store.find_execution("#3")["id"] == records[2]["id"]
    assert store.find_execution("latest")["id"] == "01JCD4"


def test_unknown_and_ambiguous_refs(filled: tuple[Store, list[dict]]) -> None:
    store, _ = filled
    with pytest.raises(StoreError, match="ambiguous.*01JAB1XYZ"):
        store.find_execution("01JAB")
    for ref in ("01JZZZ", "#99", "#x", "../etc", "", "nope/x"):
        with pytest.raises(StoreError, match="unknown execution"):
            store.find_execution(ref)


def test_latest_on_empty_store(store: Store) -> None:
    with pytest.raises(StoreError, match="no executions"):
        store.find_execution("latest")


def test_full_id_reads_only_the_record(
    filled: tuple[Store, list[dict]], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, records = filled

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("read a dataset")

    monkeypatch.setattr(Parts, "read", no_reading)
    assert store.find_execution(records[0]["id"])["counter"] == 1


def test_find_completed_picks_latest_complete(filled: tuple[Store, list[dict]]) -> None:
    store, records = filled
    assert store.find_completed("same")["id"] == records[2]["id"]  # type: ignore[index]
    assert store.find_completed("other") is None
    by_hash = store.latest_records_by_spec_hash()
    assert list(by_hash) == ["same"] and by_hash["same"]["id"] == records[2]["id"]


def test_counter_increases_and_recovers(store: Store) -> None:
    assert [store.allocate_counter() for _ in range(3)] == [1, 2, 3]
    store.write_execution(make_record(41), [])
    (store.local_path / "counter" / "value").unlink()  # type: ignore[operator]
    assert store.allocate_counter() == 42
