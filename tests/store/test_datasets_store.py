"""The store's side of dataset versions and output properties: rows written with the
record, rebuilt after a kill, one owner per version, stores older than both, and an
object store (a real moto S3 server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

import sweeper.results
from sweeper.record import ExecutionRecord
from sweeper.status import Status
from sweeper.store import Store, dataset_versions, find_version
from sweeper.store._datasets import version_rows

SHA_A, SHA_B = "a" * 64, "b" * 64


def _made(name: str, version: str, *files: tuple[str, str, int]) -> dict[str, Any]:
    return {
        "uri": f"dataset://{name}/{version}",
        "name": name,
        "version": version,
        "files": [{"path": p, "sha256": s, "size": n} for p, s, n in files],
    }


def _record(execution_id: str, ended_at: str, *made: dict[str, Any]) -> ExecutionRecord:
    return ExecutionRecord(
        id=execution_id,
        step="make",
        status=Status.COMPLETE,
        ended_at=ended_at,
        outputs=tuple(
            {
                "name": f["path"],
                "path": f["path"],
                "sha256": f["sha256"],
                "size": f["size"],
                "uri": f"datum://{f['sha256']}",
                "properties": {"v": m["uri"]},
            }
            for m in made
            for f in m["files"]
        ),  # fmt: skip
        dataset_versions=tuple(made),
    )


def test_a_final_record_writes_its_versions_and_the_first_maker_owns_one(store: Store) -> None:
    store.put_record(_record("e1", "2030-01-01T00:00:01+00:00", _made("d", "v1", ("a", SHA_A, 3))))
    # a second maker of the same version (two executions ending at once): not mixed in
    store.put_record(_record("e2", "2030-01-01T00:00:02+00:00", _made("d", "v1", ("b", SHA_B, 5))))
    store.put_record(_record("e3", "2030-01-01T00:00:03+00:00", _made("d", "v2", ("b", SHA_B, 5))))
    versions = dataset_versions(store, "d")
    assert [(v.version, v.made_by, [f.path for f in v.files]) for v in versions] == [
        ("v1", "e1", ["a"]),
        ("v2", "e3", ["b"]),
    ]
    latest = find_version(store, "d", "latest")
    assert latest is not None and latest.uri == "dataset://d/v2" and latest.size == 5
    assert find_version(store, "d", "v9") is None and dataset_versions(store, "other") == []


def test_versions_a_killed_writer_held_are_rebuilt_once(tmp_path: Path) -> None:
    location = tmp_path / "store"
    writer = Store.open(location, create=True)
    writer.buffer_rows(3600)  # rows held, then the process "dies" without a flush
    record = _record("e1", "2030-01-01T00:00:01+00:00", _made("d", "v1", ("a", SHA_A, 3)))
    writer.put_record(record)
    reader = Store.open(location)
    assert dataset_versions(reader) == [] and reader.without_rows(["e1"]) == ["e1"]
    kept = reader.get_record("e1")
    assert kept is not None
    # killed after the dataset_versions part, before the executions row (the write order)
    made = kept.to_dict()["dataset_versions"]
    reader.write_rows("dataset_versions", version_rows("e1", kept.ended_at, made))
    reader.complete_rows(kept, [])
    reader.complete_rows(kept, [])
    rows = reader.read_dataset("dataset_versions").to_pylist()
    assert [(r["name"], r["version"], r["file"], r["execution_id"]) for r in rows] == [
        ("d", "v1", "a", "e1")
    ]


def test_a_store_written_before_properties_and_datasets_still_reads(store: Store) -> None:
    # an artifacts part as the previous version wrote it: no properties column
    old = pa.table(
        {
            "execution_id": ["e0"],
            "direction": ["output"],
            "name": ["m.bin"],
            "path": ["m.bin"],
            "uri": [f"datum://{SHA_A}"],
            "sha256": [SHA_A],
            "size": pa.array([1], pa.int64()),
            "producer_execution_id": ["e0"],
        }
    )
    folder = Path(store.location) / "datasets" / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(old, folder / "part-20200101T000000Z-00aa.parquet")
    store.put_record(_record("e1", "2030-01-01T00:00:01+00:00", _made("d", "v1", ("a", SHA_A, 3))))
    frame = sweeper.results.open(store).artifacts()
    assert dict(zip(frame["name"], frame["properties"], strict=True)) == {
        "m.bin": None,
        "a": {"v": "dataset://d/v1"},
    }
    assert [v["uri"] for v in sweeper.results.open(store).datasets()] == ["dataset://d/v1"]
    # a record written before the fields existed is written back as it was read
    data = {"id": "e0", "status": "complete", "outputs": []}
    assert list(ExecutionRecord.from_dict(data).to_dict()).count("warnings") == 0


def test_versions_on_an_object_store(s3_uri: str) -> None:
    store = Store.open(s3_uri, create=True)
    store.put_record(_record("e1", "2030-01-01T00:00:01+00:00", _made("d", "v1", ("a", SHA_A, 3))))
    again = Store.open(s3_uri)
    found = find_version(again, "d", "latest")
    assert found is not None and (found.version, found.made_by) == ("v1", "e1")
    rows = again.read_dataset("artifacts").to_pylist()
    assert [r["properties"] for r in rows] == ['{"v": "dataset://d/v1"}']
