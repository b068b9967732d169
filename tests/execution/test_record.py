"""ExecutionRecord and Status: every record sweeper wrote reads back and writes back unchanged."""

from __future__ import annotations

import json

import pytest

from sweeper.execution import ExecutionRecord, Status

#: A full record as Executor wrote it before ExecutionRecord existed (keys in that order).
FULL = {
    "id": "01JABCDEF",
    "counter": 7,
    "step": "train",
    "status": "complete",
    "exit_code": 0,
    "error": None,
    "command": ["python train.py --lr=0.1"],
    "image": "python:3.12",
    "image_digest": "python@sha256:abc",
    "code_version": "git:1234",
    "parameters": {"lr": 0.1, "layers": 3},
    "metrics": {"loss": 0.25, "acc": 0.9},
    "metrics_dropped": 0,
    "inputs": [
        {
            "name": "data",
            "uri": "file:///d.csv",
            "path": "data/d.csv",
            "sha256": "aa",
            "size": 3,
            "producer_execution_id": None,
        }
    ],
    "outputs": [
        {
            "name": "m.pkl",
            "path": "m.pkl",
            "uri": "datum://bb",
            "sha256": "bb",
            "size": 5,
            "producer_execution_id": "01JABCDEF",
        }
    ],
    "outputs_skipped": [{"path": "fifo", "reason": "a FIFO, not a regular file"}],
    "created_at": "2026-01-01T00:00:00+00:00",
    "started_at": "2026-01-01T00:00:01+00:00",
    "ended_at": "2026-01-01T00:00:02+00:00",
    "duration_s": 1.5,
    "runtime": "docker",
    "reused_from": None,
    "sweep_id": "s1",
    "trial_number": 3,
    "pipeline_run_id": None,
    "node": None,
    "ray_node": "n1",
    "gpu_ids": ["0"],
    "attempt": 1,
    "host": "h",
    "spec_hash": "cafe",
    "environment": {"TOKEN": "****"},
    "resources": {"cpus": 1},
    "spec": {"step": "train", "image": "python:3.12"},
}

#: The record sweep/state.py writes for a trial whose runner died before recording it.
CRASH = {
    "id": "01JCRASH",
    "sweep_id": "s1",
    "status": "crashed",
    "error": "the Ray actor running it died",
    "ended_at": "2026-01-01T00:00:00+00:00",
    "counter": 4,
}


def test_status_is_its_text_everywhere() -> None:
    assert Status.COMPLETE == "complete"
    assert json.dumps({"status": Status.PRUNED}) == '{"status": "pruned"}'
    assert f"{Status.ERROR}" == "error" and str(Status.CRASHED) == "crashed"
    assert Status("stopped") is Status.STOPPED


def test_status_sets() -> None:
    assert Status.final() == {"complete", "error", "stopped", "crashed", "pruned"}
    assert Status.counted() == {"complete", "error", "pruned"}
    assert Status.node_final() == {"complete", "error", "stopped", "skipped"}
    assert Status.PRUNED.is_final and not Status.STARTED.is_final


def test_full_record_round_trips_byte_for_byte() -> None:
    record = ExecutionRecord.from_dict(FULL)
    assert record.status is Status.COMPLETE
    assert record.command == ("python train.py --lr=0.1",)
    assert record.outputs_skipped[0]["reason"] == "a FIFO, not a regular file"
    assert record.extra == {}
    text = json.dumps(FULL, indent=2, default=str)
    assert json.dumps(record.to_dict(), indent=2, default=str) == text
    assert ExecutionRecord.from_dict(record.to_dict()) == record


def test_unknown_keys_and_odd_values_are_kept() -> None:
    data = {**FULL, "status": "paused", "outputs": None, "future_key": {"x": [1]}}
    record = ExecutionRecord.from_dict(data)
    assert record.extra == {"status": "paused", "outputs": None, "future_key": {"x": [1]}}
    assert not record.is_final  # a status this version does not know is never final
    assert list(record.to_dict().items()) == list(data.items())


def test_crash_record_reads_with_defaults() -> None:
    record = ExecutionRecord.from_dict(CRASH)
    assert (record.id, record.sweep_id, record.counter) == ("01JCRASH", "s1", 4)
    assert record.status is Status.CRASHED and record.is_final
    assert record.error == "the Ray actor running it died"
    assert record.metrics == {} and record.outputs == () and record.attempt == 1
    written = record.to_dict()
    assert {k: written[k] for k in CRASH} == CRASH
    assert ExecutionRecord.from_dict(written) == record


def test_finished_and_objective_values() -> None:
    started = ExecutionRecord(id="e", status=Status.STARTED, metrics={"loss": 0.5, "bad": "x"})
    ended = started.finished(Status.ERROR, error="boom", ended_at="t", exit_code=2)
    assert (ended.status, ended.error, ended.ended_at, ended.exit_code) == ("error", "boom", "t", 2)
    assert started.status is Status.STARTED  # frozen: the original is unchanged
    assert ended.objective_values(["loss"]) == [0.5]
    assert ended.objective_values(["loss", "bad"]) is None
    assert (
        ExecutionRecord(id="e", metrics={"loss": float("nan")}).objective_values(["loss"]) is None
    )
    with pytest.raises(ValueError):
        ExecutionRecord.from_dict({"status": "complete"})
