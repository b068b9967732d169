"""Rows held by a batching store (a sweep's actor): few parts, nothing lost, rebuilt once."""

from __future__ import annotations

import json
import time
from pathlib import Path

from sweeper.cluster.recovery import restore_rows
from sweeper.store import Store
from tests.store.store_workers import events, make_record


def _parts(root: Path, dataset: str) -> list[Path]:
    return sorted((root / "datasets" / dataset).glob("part-*.parquet"))


def _ids(store: Store, dataset: str) -> list[str]:
    return [str(r["execution_id"]) for r in store.read_dataset(dataset).to_pylist()]


def test_held_rows_go_out_together_with_executions_last(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = Store.open(root, create=True)
    store.buffer_rows(3600)  # only flush_rows writes them in this test
    records = [
        make_record(
            n,
            outputs=[{"name": "m", "path": "m", "uri": "datum://c", "sha256": "c" * 64, "size": 1}],
        )
        for n in range(1, 31)
    ]
    for record in records:
        store.write_execution(record, events(2))
        # the truth is on disk at once, final
        saved = json.loads((root / "executions" / record["id"] / "execution.json").read_text())
        assert saved["status"] == "complete"
    assert store.read_dataset("executions").num_rows == 0  # held, not lost
    assert store.flush_rows() == 30
    assert [len(_parts(root, d)) for d in ("executions", "metrics", "artifacts")] == [1, 1, 1]
    wanted = sorted(r["id"] for r in records)
    assert sorted(_ids(store, "executions")) == wanted
    assert sorted(set(_ids(store, "metrics"))) == wanted and len(_ids(store, "metrics")) == 30 * 4
    assert sorted(_ids(store, "artifacts")) == wanted
    # a part per dataset is written before executions: a reader never sees an execution
    # without its metrics
    times = {d: _parts(root, d)[0].stat().st_mtime_ns for d in ("metrics", "executions")}
    assert times["metrics"] <= times["executions"]
    assert store.flush_rows() == 0  # nothing twice
    assert store.read_dataset("executions").num_rows == 30


def test_held_rows_are_written_by_the_timer(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = Store.open(root, create=True)
    store.buffer_rows(0.2)
    for n in range(1, 4):
        store.write_execution(make_record(n), events(1))
    deadline = time.monotonic() + 60
    while not _parts(root, "executions") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(Store.open(root).read_dataset("executions")) == 3


def test_rows_a_killed_writer_held_are_rebuilt_from_the_records_once(tmp_path: Path) -> None:
    root = tmp_path / "s"
    writer = Store.open(root, create=True)
    writer.buffer_rows(3600)
    flushed = make_record(1)
    writer.write_execution(flushed, events(1))
    writer.flush_rows()
    held = [make_record(n) for n in (2, 3)]
    for record in held:
        log = writer.log_file(record["id"])
        assert log is not None
        log.write_text('epoch 1\n{"loss": 0.5}\n{"loss": 0.25, "acc": 0.9}\n')
        writer.write_execution(record, events(2))
    del writer  # the process that held them is gone: its rows never reach the datasets

    store = Store.open(root)
    everyone = [flushed["id"], *(r["id"] for r in held), "01JNEVERRAN"]
    assert sorted(store.without_rows(everyone)) == sorted([*(r["id"] for r in held), "01JNEVERRAN"])
    assert sorted(restore_rows(store, everyone)) == sorted(r["id"] for r in held)
    assert sorted(_ids(store, "executions")) == sorted(everyone[:3])
    # the metrics come from the log, the only copy of the events left
    metrics = [
        r for r in store.read_dataset("metrics").to_pylist() if r["execution_id"] == held[0]["id"]
    ]
    assert [(r["key"], r["value"]) for r in metrics] == [
        ("loss", 0.5),
        ("loss", 0.25),
        ("acc", 0.9),
    ]
    assert restore_rows(store, everyone) == []  # nothing twice
    assert len(_ids(store, "executions")) == 3
