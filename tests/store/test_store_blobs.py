from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sweeper.errors import StoreError
from sweeper.store import Store, blob_uri, parse_blob_uri


def _blob_files(store: Store) -> list[Path]:
    assert store.local_path is not None
    return sorted(p for p in (store.local_path / "blobs").rglob("*") if p.is_file())


def test_put_file_stores_once(store: Store, tmp_path: Path) -> None:
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"same content" * 1000)
    b.write_bytes(b"same content" * 1000)
    sha_a, size_a = store.put_file(a)
    blob = _blob_files(store)[0]
    mtime = blob.stat().st_mtime_ns
    sha_b, size_b = store.put_file(b)
    assert (sha_a, size_a) == (sha_b, size_b) == (hashlib.sha256(a.read_bytes()).hexdigest(), 12000)
    assert _blob_files(store) == [blob]
    assert blob.stat().st_mtime_ns == mtime
    assert blob.relative_to(store.local_path) == Path("blobs", sha_a[:2], sha_a)  # type: ignore[arg-type]


def test_bytes_roundtrip_and_fetch(store: Store, tmp_path: Path) -> None:
    sha = store.put_bytes(b"hello")
    assert sha == hashlib.sha256(b"hello").hexdigest()
    assert store.has_blob(sha) and not store.has_blob("0" * 64)
    store.fetch_blob(sha, tmp_path / "out" / "hello.txt")
    assert (tmp_path / "out" / "hello.txt").read_bytes() == b"hello"
    assert store.blob_local_path(sha) is not None
    assert store.blob_local_path(sha).read_bytes() == b"hello"  # type: ignore[union-attr]
    assert parse_blob_uri(blob_uri(sha)) == sha
    assert parse_blob_uri("s3://x/y") is None


def test_unknown_corrupt_and_invalid_blobs(store: Store, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="unknown blob"):
        store.fetch_blob("a" * 64, tmp_path / "x")
    with pytest.raises(StoreError, match="not a sha256"):
        store.has_blob("../../etc/passwd")
    sha = store.put_bytes(b"good data")
    path = store.blob_local_path(sha)
    assert path is not None
    path.write_bytes(b"evil data")
    with pytest.raises(StoreError, match="corrupt"):
        store.fetch_blob(sha, tmp_path / "y")
    assert not (tmp_path / "y").exists()


def test_truncated_blob_is_rewritten(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"x" * 5000)
    sha, _ = store.put_file(src)
    path = store.blob_local_path(sha)
    assert path is not None
    path.write_bytes(b"x" * 10)
    store.put_file(src)
    assert path.read_bytes() == b"x" * 5000
