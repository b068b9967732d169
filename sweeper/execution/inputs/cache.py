"""The input cache: files by sha256, and what each URI held when it was last fetched.

A sweep of a hundred trials downloads a data set once: every input file goes through this
folder and is hard-linked (or copied) into each work folder. Cached blobs are read-only
because the inputs folders share their inode.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any


class InputCache:
    """Content-addressed blobs plus a URI -> sha256 index, shared by concurrent fetches.

    Layout: ``blobs/<sha256>`` (read-only), ``uris/<sha256 of the URI>.json`` and ``tmp/``.
    Every write is a temporary file renamed into place, so readers never see half a file.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("blobs", "uris", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    def blob_path(self, sha256: str) -> Path:
        """Where the blob with this digest is (or would be) kept."""
        return self.root / "blobs" / sha256

    def has(self, sha256: str, size: int) -> bool:
        """Whether the blob is cached whole."""
        try:
            return self.blob_path(sha256).stat().st_size == size
        except OSError:
            return False

    def _index_path(self, key: str) -> Path:
        return self.root / "uris" / (hashlib.sha256(key.encode()).hexdigest() + ".json")

    def entry(self, key: str) -> dict[str, Any] | None:
        """What :meth:`remember` kept for ``key`` (``uri``, ``validator``, ``sha256``, ``size``)."""
        try:
            data = json.loads(self._index_path(key).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and "sha256" in data and "size" in data else None

    def lookup(self, key: str, validator: Mapping[str, Any]) -> tuple[str, int] | None:
        """The cached (sha256, size) when ``key`` was fetched with the same validator."""
        entry = self.entry(key)
        if entry is None or entry.get("validator") != dict(validator):
            return None
        if not self.has(entry["sha256"], entry["size"]):
            return None
        return entry["sha256"], entry["size"]

    def remember(
        self, key: str, uri: str, validator: Mapping[str, Any], sha256: str, size: int
    ) -> None:
        """Keep that ``key`` held this blob while ``validator`` (size and time, ETag) holds."""
        record = {"uri": uri, "validator": dict(validator), "sha256": sha256, "size": size}
        with self.temporary() as tmp:
            tmp.write_text(json.dumps(record))
            os.replace(tmp, self._index_path(key))

    @contextlib.contextmanager
    def temporary(self) -> Iterator[Path]:
        """A fresh temporary file path in the cache, removed afterwards unless renamed."""
        fd, name = tempfile.mkstemp(dir=self.root / "tmp", prefix=".part-")
        os.close(fd)
        path = Path(name)
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    def ingest(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        """Write a stream into the cache while hashing it; return (sha256, size)."""
        digest = hashlib.sha256()
        size = 0
        with self.temporary() as tmp:
            with tmp.open("wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            sha = digest.hexdigest()
            if not self.has(sha, size):
                tmp.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
                os.replace(tmp, self.blob_path(sha))
        return sha, size


__all__ = ["InputCache"]
