"""The store on S3, against a real (moto) S3 server on 127.0.0.1."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from sweeper.errors import StoreError
from sweeper.store import DamagedPartWarning, Store
from tests.store.store_workers import events, make_record


def test_open_create_and_not_a_store(s3_uri: str) -> None:
    with pytest.raises(StoreError, match="no sweeper store"):
        Store.open(s3_uri)
    store = Store.open(s3_uri, create=True)
    assert store.local_path is None
    assert Store.open(s3_uri).location == s3_uri
    other = s3_uri.replace("/stores/one?", "/stores/two?")
    fs, path = pafs.FileSystem.from_uri(other)
    with fs.open_output_stream(f"{path}/junk.txt") as out:
        out.write(b"x")
    with pytest.raises(StoreError, match="is not a sweeper store"):
        Store.open(other, create=True)


def test_round_trip_lookup_and_compact(s3_uri: str) -> None:
    store = Store.open(s3_uri, create=True)
    records = []
    for number in range(1, 4):
        record = make_record(
            number,
            outputs=[{"name": "m", "path": "m", "uri": "datum://x", "sha256": "c" * 64, "size": 1}],
        )
        store.write_execution(record, events(2))
        records.append(record)
    assert sorted(store.read_dataset("executions")["counter"].to_pylist()) == [1, 2, 3]
    assert store.read_dataset("metrics").num_rows == 12
    assert store.read_dataset("artifacts").num_rows == 3
    assert store.find_execution(records[0]["id"]) == records[0]
    assert store.find_execution("#2")["id"] == records[1]["id"]
    assert store.find_execution("latest")["id"] == records[2]["id"]
    before = sorted(store.read_dataset("metrics").to_pandas()["value"].tolist())
    assert store.compact() == 9
    assert sorted(store.read_dataset("metrics").to_pandas()["value"].tolist()) == before
    assert store.read_dataset("executions").num_rows == 3


def test_blobs_dedup_and_fetch(s3_uri: str, tmp_path: Path) -> None:
    store = Store.open(s3_uri, create=True)
    src = tmp_path / "data.bin"
    src.write_bytes(b"payload" * 10000)
    sha, size = store.put_file(src)
    assert (sha, size) == (hashlib.sha256(src.read_bytes()).hexdigest(), 70000)
    assert store.put_file(src) == (sha, size)
    fs, root = pafs.FileSystem.from_uri(s3_uri)
    listed = fs.get_file_info(pafs.FileSelector(f"{root}/blobs", recursive=True))
    assert [i.base_name for i in listed if i.type == pafs.FileType.File] == [sha]
    assert store.blob_local_path(sha) is None
    store.fetch_blob(sha, tmp_path / "copy.bin")
    assert (tmp_path / "copy.bin").read_bytes() == src.read_bytes()
    with pytest.raises(StoreError, match="unknown blob"):
        store.fetch_blob("d" * 64, tmp_path / "none")


def test_counter_claims_are_unique(s3_uri: str) -> None:
    Store.open(s3_uri, create=True)

    def allocate(_: int) -> list[int]:
        store = Store.open(s3_uri)
        return [store.allocate_counter() for _ in range(6)]

    with ThreadPoolExecutor(4) as pool:
        values = [v for batch in pool.map(allocate, range(4)) for v in batch]
    assert len(values) == len(set(values)) == 24
    assert min(values) >= 1


def test_damaged_part_on_s3(s3_uri: str) -> None:
    store = Store.open(s3_uri, create=True)
    store.write_execution(make_record(1), [])
    store.write_execution(make_record(2), [])
    fs, root = pafs.FileSystem.from_uri(s3_uri)
    name = sorted(
        i.path for i in fs.get_file_info(pafs.FileSelector(f"{root}/datasets/executions"))
    )[0]
    with fs.open_output_stream(name) as out:
        out.write(b"PAR1 truncated")
    with pytest.warns(DamagedPartWarning, match=name.rsplit("/", 1)[1]):
        assert store.read_dataset("executions").num_rows == 1
    assert store.doctor(quarantine=True) == [f"datasets/executions/{name.rsplit('/', 1)[1]}"]
    assert store.damaged_parts() == []
