"""The executions dataset names each distributed member's group and member id (a real store)."""

from __future__ import annotations

from pathlib import Path

from sweeper.record import ExecutionRecord
from sweeper.status import Status
from sweeper.store import Store


def test_members_are_grouped_in_the_executions_dataset(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "s"), create=True)
    member = {"config": {"group_name": "task-g", "member_id": "1", "required_count": 2}}
    for execution_id, distributed in (("a", member), ("b", None)):
        store.put_record(
            ExecutionRecord(
                id=execution_id,
                step="s",
                status=Status.COMPLETE,
                counter=store.allocate_counter(),
                ended_at="2026-01-01T00:00:00+00:00",
                distributed=distributed,
            )
        )
    rows = {r["execution_id"]: r for r in store.read_dataset("executions").to_pylist()}
    assert (rows["a"]["group_id"], rows["a"]["member_id"]) == ("task-g", "1")
    assert (rows["b"]["group_id"], rows["b"]["member_id"]) == (None, None)
