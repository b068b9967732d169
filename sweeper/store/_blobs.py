"""Content-addressed blobs: every file is stored once, under ``blobs/<ab>/<sha256>``."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from sweeper.errors import StoreError

from ._backend import Backend

BLOB_SCHEME = "datum://"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


def blob_uri(sha256: str) -> str:
    """The URI of a blob, as recorded in artifacts: ``datum://<sha256>``."""
    return BLOB_SCHEME + sha256


def parse_blob_uri(uri: str) -> str | None:
    """The sha256 of a ``datum://`` URI, or None for any other string."""
    if not uri.startswith(BLOB_SCHEME):
        return None
    return check_sha256(uri[len(BLOB_SCHEME) :])


def check_sha256(sha256: str) -> str:
    """The digest, lower-cased, or StoreError when it is not 64 hex digits."""
    digest = sha256.strip().lower()
    if not _SHA256.match(digest):
        raise StoreError(f"not a sha256 digest: {sha256!r}")
    return digest


def blob_relpath(sha256: str) -> str:
    """Where a blob lives, relative to the store root."""
    digest = check_sha256(sha256)
    return f"blobs/{digest[:2]}/{digest}"


def hash_file(path: Path) -> tuple[str, int]:
    """(sha256 hex digest, size in bytes) of a local file."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class Blobs:
    """The blob area of one store."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def _present(self, sha256: str, size: int) -> bool:
        return self._backend.size(blob_relpath(sha256)) == size

    def put_file(self, path: Path) -> tuple[str, int]:
        """Store a file unless a blob with its content is already there; (sha256, size)."""
        sha256, size = hash_file(path)
        if self._present(sha256, size):
            return sha256, size
        rel = blob_relpath(sha256)
        # Hash what is actually copied, so a file changing under us never lands under the
        # wrong name.
        digest = hashlib.sha256()
        with open(path, "rb") as src, self._backend.atomic_writer(rel) as out:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
            if digest.hexdigest() != sha256:
                raise StoreError(f"{path} changed while it was being stored")
        return sha256, size

    def put_bytes(self, data: bytes) -> str:
        """Store bytes as a blob; their sha256."""
        sha256 = hashlib.sha256(data).hexdigest()
        if not self._present(sha256, len(data)):
            self._backend.write_bytes(blob_relpath(sha256), data)
        return sha256

    def has(self, sha256: str) -> bool:
        """Whether the blob is stored."""
        return self._backend.exists(blob_relpath(sha256))

    def fetch(self, sha256: str, dest: Path) -> None:
        """Copy a blob to ``dest`` (atomically) and check its digest."""
        rel = blob_relpath(sha256)
        if not self._backend.exists(rel):
            raise StoreError(f"unknown blob {sha256} in store {self._backend.location}")
        self._backend.download(rel, dest)
        actual, _ = hash_file(dest)
        if actual != check_sha256(sha256):
            dest.unlink(missing_ok=True)
            raise StoreError(f"blob {sha256} in store {self._backend.location} is corrupt")

    def local_path(self, sha256: str) -> Path | None:
        """The blob's file on this machine, when the store is local and has it."""
        if self._backend.local_path is None:
            return None
        path = self._backend.local_path / blob_relpath(sha256)
        return path if path.is_file() else None
