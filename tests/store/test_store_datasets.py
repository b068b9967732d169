from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pytest

from sweeper.store import DamagedPartWarning, Store
from sweeper.store._parts import Parts
from sweeper.store._rows import execution_row, rows_to_table
from tests.store.store_workers import events, make_record


def _parts(store: Store, dataset: str) -> list[Path]:
    assert store.local_path is not None
    return sorted((store.local_path / "datasets" / dataset).glob("part-*.parquet"))


def test_execution_round_trip(store: Store) -> None:
    record = make_record(
        7,
        inputs=[
            {
                "name": "dataset",
                "uri": "s3://b/mnist.npz",
                "path": "dataset/mnist.npz",
                "sha256": "a" * 64,
                "size": 123,
                "producer_execution_id": None,
            }
        ],
        outputs=[
            {
                "name": "model.pkl",
                "path": "model.pkl",
                "uri": "datum://" + "b" * 64,
                "sha256": "b" * 64,
                "size": 10,
            }
        ],
        gpu_ids=[0, 1],
    )
    evs = [
        {"seq": 0, "time": "2026-11-26T07:00:01.5+00:00", "values": {"epoch": 1, "loss": 0.5}},
        {
            "seq": 1,
            "time": "2026-11-26T07:00:02Z",
            "values": {
                "loss": float("nan"),
                "note": "hi",
                "hist": [1, 2],
                "big": 10**400,
                "ok": True,
            },
        },
    ]
    store.write_execution(record, evs)

    assert store.read_json(f"executions/{record['id']}/execution.json") == record
    row = store.read_dataset("executions").to_pylist()[0]
    assert row["execution_id"] == record["id"] and row["counter"] == 7
    assert row["param.lr"] == 0.1 and row["param.epochs"] == 5
    assert row["param.act"] == "relu" and row["param.flag"] is True
    assert row["metric.loss"] == 0.4 and row["metric.accuracy"] == 0.9
    assert json.loads(row["command"]) == record["command"]
    assert json.loads(row["parameters"]) == record["parameters"]
    assert json.loads(row["gpu_ids"]) == [0, 1]
    assert row["ended_at"].isoformat() == "2026-11-26T07:01:00+00:00"
    assert row["image_digest"] is None and row["duration_s"] == 1.5
    schema = store.read_dataset("executions").schema
    assert schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("param.epochs").type == pa.int64()

    metrics = {(r["seq"], r["key"]): r for r in store.read_dataset("metrics").to_pylist()}
    assert len(metrics) == 7
    assert metrics[(0, "loss")]["value"] == 0.5
    assert metrics[(0, "epoch")]["value"] == 1.0
    assert metrics[(1, "loss")]["value"] is None and metrics[(1, "loss")]["value_json"] == "NaN"
    assert (
        metrics[(1, "note")]["value"] is None
        and json.loads(metrics[(1, "note")]["value_json"]) == "hi"
    )
    assert json.loads(metrics[(1, "hist")]["value_json"]) == [1, 2]
    assert metrics[(1, "big")]["value"] is None
    assert metrics[(1, "ok")]["value"] is None and metrics[(1, "ok")]["value_json"] == "true"
    assert metrics[(0, "loss")]["time"].isoformat() == "2026-11-26T07:00:01.500000+00:00"

    artifacts = sorted(store.read_dataset("artifacts").to_pylist(), key=lambda r: r["direction"])
    assert [(a["direction"], a["name"], a["sha256"]) for a in artifacts] == [
        ("input", "dataset", "a" * 64),
        ("output", "model.pkl", "b" * 64),
    ]
    assert artifacts[0]["size"] == 123


def test_each_write_is_a_new_part_and_append_never_reads(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("an append read the dataset")

    monkeypatch.setattr(Parts, "read", no_reading)
    monkeypatch.setattr(Parts, "read_part", no_reading)
    for number in range(3):
        store.write_execution(make_record(number), events(2))
    assert len(_parts(store, "executions")) == 3
    assert len(_parts(store, "metrics")) == 3
    assert not _parts(store, "artifacts")


def test_schemas_unify_across_parts(store: Store) -> None:
    store.write_execution(make_record(1, parameters={"lr": 1, "mode": 3}, metrics={"m": 1}), [])
    store.write_execution(
        make_record(2, parameters={"lr": 0.5, "mode": "fast", "extra": [1]}, metrics={"m": "n/a"}),
        [],
    )
    store.write_execution(make_record(3, parameters={}, metrics={}), [])
    table = store.read_dataset("executions")
    assert table.num_rows == 3
    assert table.schema.field("param.lr").type == pa.float64()
    assert table.schema.field("param.mode").type == pa.string()
    rows = {r["counter"]: r for r in table.to_pylist()}
    assert rows[1]["param.lr"] == 1.0 and rows[2]["param.lr"] == 0.5 and rows[3]["param.lr"] is None
    assert rows[1]["param.mode"] == "3" and rows[2]["param.mode"] == "fast"
    assert json.loads(rows[2]["param.extra"]) == [1]
    assert table.column_names[0] == "execution_id"


def test_empty_dataset_has_its_schema(store: Store) -> None:
    table = store.read_dataset("metrics")
    assert table.num_rows == 0
    assert table.column_names == ["execution_id", "seq", "time", "key", "value", "value_json"]
    assert store.read_dataset("custom_things").num_rows == 0


def test_temporary_files_are_ignored(store: Store) -> None:
    store.write_execution(make_record(1), [])
    folder = store.local_path / "datasets" / "executions"  # type: ignore[operator]
    (folder / ".part-x.parquet.abc.tmp").write_bytes(b"PAR1 half written")
    (folder / "_tmp-part-y.parquet").write_bytes(b"junk")
    assert store.read_dataset("executions").num_rows == 1
    assert store.damaged_parts() == []


def test_truncated_part_is_reported_and_skipped(store: Store) -> None:
    for number in range(3):
        store.write_execution(make_record(number), events(1))
    victim = _parts(store, "executions")[1]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    with pytest.warns(DamagedPartWarning, match=victim.name):
        table = store.read_dataset("executions")
    assert sorted(table["counter"].to_pylist()) == [0, 2]
    rel = f"datasets/executions/{victim.name}"
    assert store.damaged_parts() == [rel]
    assert store.doctor() == [rel] and victim.exists()
    assert store.doctor(quarantine=True) == [rel]
    assert not victim.exists()
    assert (store.local_path / "quarantine" / rel).exists()  # type: ignore[operator]
    assert store.damaged_parts() == []
    assert store.read_dataset("metrics").num_rows == 6


def test_write_rows_for_sweeps(store: Store) -> None:
    store.write_rows(
        "sweeps",
        [
            {
                "sweep_id": "s1",
                "step": "train",
                "sampler": "tpe",
                "metrics": ["loss"],
                "directions": ["minimize"],
                "search_space": {"lr": {"low": 0.001, "high": 0.1, "log": True}},
                "seed": 3,
                "trials_asked": 0,
                "status": "running",
                "created_at": "2026-11-26T07:00:00Z",
            }
        ],
    )
    store.write_rows("sweeps", [])
    store.write_rows(
        "sweeps",
        [{"sweep_id": "s2", "metrics": "loss", "search_space": json.dumps({"lr": [1, 2]})}],
    )
    second = {r["sweep_id"]: r for r in store.read_dataset("sweeps").to_pylist()}["s2"]
    assert json.loads(second["metrics"]) == "loss"
    assert json.loads(second["search_space"]) == {"lr": [1, 2]}
    row = store.read_dataset("sweeps").to_pylist()[0]
    assert row["sweep_id"] == "s1" and json.loads(row["metrics"]) == ["loss"]
    assert json.loads(row["search_space"])["lr"]["log"] is True
    assert row["updated_at"] is not None and row["seed"] == 3
    with pytest.raises(ValueError, match="invalid dataset name '../evil'"):
        store.write_rows("../evil", [{"a": 1}])


def test_nan_parameter_and_huge_int(store: Store) -> None:
    store.write_execution(make_record(1, parameters={"x": float("nan"), "n": 2**70}), [])
    row = store.read_dataset("executions").to_pylist()[0]
    assert math.isnan(row["param.x"])
    assert row["param.n"] == float(2**70)


def test_failure_kind_column_and_rows_written_before_it(store: Store) -> None:
    old = make_record(1, status="error", exit_code=1)
    # a part written before the column existed
    table = rows_to_table("executions", [execution_row(old)]).drop_columns(["failure_kind"])
    Parts(store.backend, "executions").write(table)
    store.write_execution(make_record(2, status="error", exit_code=137, failure_kind="oom"), [])
    rows = store.read_dataset("executions").to_pylist()
    assert [(r["counter"], r["failure_kind"]) for r in rows] == [(1, None), (2, "oom")]
    assert store.read_dataset("executions").schema.field("failure_kind").type == pa.string()
