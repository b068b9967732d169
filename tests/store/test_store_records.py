"""The record-level store methods (the RecordStore contract), on a local and an S3 store."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from sweeper.errors import StoreError
from sweeper.execution import Executor
from sweeper.execution.metrics import record_missing_rows
from sweeper.record import ExecutionRecord
from sweeper.runtime import LocalRuntime
from sweeper.status import Status
from sweeper.store import RecordStore, Store
from tests.execution.test_record import FULL, fit_spec
from tests.store.store_workers import events, make_record


def _record(number: int, **overrides: object) -> ExecutionRecord:
    return ExecutionRecord.from_dict(make_record(number, **overrides))


def _rows(store: Store, dataset: str, execution_id: str) -> list[dict[str, object]]:
    rows = store.read_dataset(dataset).to_pylist()
    return [r for r in rows if r["execution_id"] == execution_id]


def test_put_record_writes_rows_only_once_final(tmp_path: Path) -> None:
    store: RecordStore = Store.open(tmp_path / "s", create=True)  # mypy: Store is a RecordStore
    final = _record(
        1, outputs=[{"name": "m", "path": "m", "uri": "datum://c", "sha256": "c" * 64, "size": 1}]
    )
    started = ExecutionRecord(id=final.id, counter=1, step="train", status=Status.STARTED)

    store.put_record(started)
    path = tmp_path / "s" / "executions" / final.id / "execution.json"
    assert json.loads(path.read_text()) == started.to_dict()
    assert store.get_record(final.id) == started
    assert store.read_dataset("executions").num_rows == 0  # not counted before it ends

    store.put_record(final, events(2))
    assert json.loads(path.read_text()) == final.to_dict()
    assert store.get_record(final.id) == final
    assert isinstance(store, Store)
    (row,) = _rows(store, "executions", final.id)
    assert row["status"] == "complete" and type(row["status"]) is str
    assert len(_rows(store, "metrics", final.id)) == 4
    assert len(_rows(store, "artifacts", final.id)) == 1
    assert store.find_execution(final.id)["status"] == "complete"
    assert store.get_record("01JNEVERWRITTEN") is None


@pytest.mark.parametrize(
    "left", [b"", b'{\n  "id": "01J', b"\0" * 64], ids=["empty", "cut", "zeros"]
)
def test_a_started_record_cut_by_a_machine_crash_reads_as_none(tmp_path: Path, left: bytes) -> None:
    # A started record is not fsynced: after a crash of the machine its file may be empty,
    # cut or zeros. It reads as a record never written, and settling records the plan.
    from sweeper.cluster import recovery

    store = Store.open(tmp_path / "s", create=True)
    planned = ExecutionRecord(id="01JCUT", step="train", parameters={"x": 1}, sweep_id="s1")
    store.put_record(replace(planned, counter=1, status=Status.STARTED))
    (tmp_path / "s" / "executions" / "01JCUT" / "execution.json").write_bytes(left)

    assert store.get_record("01JCUT") is None
    with pytest.raises(StoreError, match="no readable execution.json"):
        store.find_execution("01JCUT")
    crashed = recovery.mark_crashed(store, "01JCUT", "the machine crashed", planned=planned)
    assert crashed.status is Status.CRASHED and crashed.step == "train"
    assert store.get_record("01JCUT") == crashed
    (row,) = _rows(store, "executions", "01JCUT")
    assert row["status"] == "crashed" and row["sweep_id"] == "s1"


def test_execution_json_is_what_write_execution_wrote(tmp_path: Path) -> None:
    # The file of a record put through ExecutionRecord is byte for byte the old dict's file.
    old, new = Store.open(tmp_path / "old", create=True), Store.open(tmp_path / "new", create=True)
    data = dict(FULL)  # every key, in the order the executor writes them
    old.write_execution(data, [])
    record = ExecutionRecord.from_dict(data)
    new.put_record(record)
    rel = f"executions/{data['id']}/execution.json"
    assert (tmp_path / "new" / rel).read_bytes() == (tmp_path / "old" / rel).read_bytes()


def test_complete_rows_writes_what_a_killed_writer_left_out(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", create=True)
    record = _record(1)
    # A writer killed after execution.json and before the rows.
    store.write_json(f"executions/{record.id}/execution.json", record.to_dict())
    assert store.find_completed(record.spec_hash or "") is None
    store.complete_rows(record, events(3))
    store.complete_rows(record, events(3))  # a second recovery writes nothing twice
    assert len(_rows(store, "executions", record.id)) == 1
    assert len(_rows(store, "metrics", record.id)) == 6


def test_logs_local_and_remote(tmp_path: Path, s3_uri: str) -> None:
    local = Store.open(tmp_path / "s", create=True)
    log = local.log_file("e1")
    assert log == tmp_path / "s" / "executions" / "e1" / "logs.txt" and log.parent.is_dir()
    log.write_text("line 1\n")
    assert local.read_log("e1") == "line 1\n"
    assert local.read_log("e2") is None
    assert local.scratch_dir() == tmp_path / "s" / "tmp"

    remote = Store.open(s3_uri, create=True)
    assert remote.log_file("e1") is None
    scratch = tmp_path / "scratch.txt"
    scratch.write_text("remote line\n")
    remote.put_log("e1", scratch)
    assert remote.read_log("e1") == "remote line\n"
    assert remote.scratch_dir().name == "sweeper-scratch"


def test_sweeps_and_latest_sweep(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", create=True)
    assert store.latest_sweep() is None and store.get_sweep("sw1") is None
    store.put_sweep("sw1", {"sweep_id": "sw1", "status": "running", "created_at": "2026-01-01"})
    store.put_sweep("sw2", {"sweep_id": "sw2", "status": "complete", "created_at": "2026-01-02"})
    assert store.get_sweep("sw2") == {
        "sweep_id": "sw2",
        "status": "complete",
        "created_at": "2026-01-02",
    }
    assert (tmp_path / "s" / "sweeps" / "sw1" / "sweep.json").is_file()
    assert store.latest_sweep() == "sw2"
    assert store.latest_sweep(unfinished=True) == "sw1"
    with pytest.raises(ValueError, match="invalid sweep id"):
        store.get_sweep("../x")


def test_latest_sweep_on_s3(s3_uri: str) -> None:
    store = Store.open(s3_uri, create=True)
    store.put_sweep("a", {"sweep_id": "a", "status": "complete", "created_at": "2026-01-03"})
    store.put_sweep("b", {"sweep_id": "b", "status": "running", "created_at": "2026-01-01"})
    assert store.latest_sweep() == "a"
    assert store.latest_sweep(unfinished=True) == "b"


def test_sweep_journal_holds_a_study(tmp_path: Path, s3_uri: str) -> None:
    store = Store.open(tmp_path / "s", create=True)
    path = store.sweep_journal("sw1")
    assert path == tmp_path / "s" / "sweeps" / "sw1" / "optuna.journal"
    storage = JournalStorage(JournalFileBackend(str(path)))
    optuna.create_study(study_name="sw1", storage=storage).optimize(lambda t: 1.0, n_trials=1)
    assert len(optuna.load_study(study_name="sw1", storage=storage).trials) == 1
    with pytest.raises(StoreError, match="--storage"):
        Store.open(s3_uri, create=True).sweep_journal("sw1")


def test_pipeline_runs(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", create=True)
    assert store.get_pipeline_run("r1") is None
    store.put_pipeline_run("r1", {"pipeline_run_id": "r1", "nodes": {"a": {"status": "pending"}}})
    assert store.get_pipeline_run("r1") == {
        "pipeline_run_id": "r1",
        "nodes": {"a": {"status": "pending"}},
    }
    assert (tmp_path / "s" / "pipelines" / "r1" / "run.json").is_file()


def test_executor_on_a_remote_store_uploads_its_log(tmp_path: Path, s3_uri: str) -> None:
    store = Store.open(s3_uri, create=True)
    record = Executor(store, LocalRuntime(), scratch_dir=tmp_path / "scratch").run(
        fit_spec(tmp_path)
    )
    assert record.status is Status.COMPLETE
    assert store.get_record(record.id) == record
    assert '{"loss": 0.25}' in (store.read_log(record.id) or "")
    (row,) = store.read_dataset("executions").to_pylist()
    assert row["execution_id"] == record.id and row["status"] == "complete"


def test_record_missing_rows_reads_the_log_metrics(tmp_path: Path) -> None:
    # A runner killed between the final execution.json and its rows: recovery finishes them.
    store = Store.open(tmp_path / "s", create=True)
    record = Executor(store, LocalRuntime()).run(fit_spec(tmp_path))
    other = Store.open(tmp_path / "t", create=True)
    other.write_json(f"executions/{record.id}/execution.json", record.to_dict())
    log = other.log_file(record.id)
    assert log is not None
    log.write_text(store.read_log(record.id) or "")
    record_missing_rows(other, record)
    record_missing_rows(other, record)  # never twice
    assert len(_rows(other, "executions", record.id)) == 1
    assert [r["value"] for r in _rows(other, "metrics", record.id)] == [0.5, 0.25]
