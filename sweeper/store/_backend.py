"""Where the store's bytes live: a local folder or a pyarrow filesystem (s3://, gs://, ...).

Both backends expose the same small interface over paths relative to the store root
("datasets/metrics/part-x.parquet"). Every write is atomic:

* locally, bytes go to a temporary file in the target folder (its name starts with ".")
  which is fsynced and renamed over the final name, so a reader or a kill -9 never sees a
  half-written file under a final name. A write that need not survive a crash of the
  machine (``durable=False``) skips the fsync: still atomic for readers and for a
  ``kill -9`` (the page cache outlives a process), but after a power loss it may be
  missing, old, or empty;
* on an object store, an object appears only when its upload completes (a single PUT or a
  completed multipart upload), so the final key is written directly; a rename there is a
  copy plus a delete and would be *less* safe. A failed upload is deleted.
"""

from __future__ import annotations

import os
import shutil
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    # pyarrow is imported where a store first needs it: an execution actor opens its store
    # and runs a step long before it writes a Parquet row (see tests/store/test_store_imports.py).
    import pyarrow.fs as pafs

TEMP_PREFIX = "."
"""Temporary files start with this; every listing in the store ignores them."""


@dataclass(frozen=True)
class FileEntry:
    """A file found by :meth:`Backend.list_files`."""

    name: str
    size: int


def is_temporary(name: str) -> bool:
    """Whether a file name is a temporary file (never a committed part or blob)."""
    return name.startswith(TEMP_PREFIX) or name.startswith("_tmp")


class Backend(ABC):
    """Byte-level access to a store root; paths are relative, with "/" separators."""

    location: str
    local_path: Path | None

    @property
    @abstractmethod
    def filesystem(self) -> pafs.FileSystem:
        """The pyarrow filesystem that reads and writes the Parquet parts."""

    @abstractmethod
    def fs_path(self, rel: str) -> str:
        """The path of ``rel`` inside :attr:`filesystem`."""

    @abstractmethod
    def read_bytes(self, rel: str) -> bytes | None:
        """The file's content, or None when it does not exist."""

    @abstractmethod
    def atomic_writer(self, rel: str, *, durable: bool = True) -> AbstractContextManager[BinaryIO]:
        """A writable file that appears at ``rel`` only when the block exits without error.

        ``durable=False``: a file that may be lost in a crash of the machine (see the module
        docstring); it is never seen half-written.
        """

    def write_bytes(self, rel: str, data: bytes, *, durable: bool = True) -> None:
        """Write ``data`` to ``rel`` atomically, replacing any previous file."""
        with self.atomic_writer(rel, durable=durable) as out:
            out.write(data)

    def upload(self, local: Path, rel: str) -> None:
        """Copy a local file to ``rel`` atomically."""
        with open(local, "rb") as src, self.atomic_writer(rel) as out:
            while chunk := src.read(8 << 20):
                out.write(chunk)

    @abstractmethod
    def download(self, rel: str, dest: Path) -> None:
        """Copy ``rel`` to a local file, atomically at ``dest``."""

    @abstractmethod
    def size(self, rel: str) -> int | None:
        """The file's size in bytes, or None when it does not exist."""

    @abstractmethod
    def list_files(self, rel_dir: str) -> list[FileEntry]:
        """Committed files directly inside ``rel_dir`` (temporary files left out)."""

    @abstractmethod
    def list_dirs(self, rel_dir: str) -> list[str]:
        """Names of the folders directly inside ``rel_dir``."""

    @abstractmethod
    def delete(self, rel: str) -> None:
        """Remove a file; a missing file is not an error."""

    @abstractmethod
    def move(self, src: str, dst: str) -> None:
        """Move a file inside the store."""

    @abstractmethod
    def root_state(self) -> str:
        """ "missing", "empty" or "nonempty"."""

    def exists(self, rel: str) -> bool:
        """Whether the file exists."""
        return self.size(rel) is not None


def new_temp_name(name: str) -> str:
    """A temporary name for a file on its way to ``name`` (listings ignore it)."""
    return f"{TEMP_PREFIX}{name}.{uuid.uuid4().hex}.tmp"


class LocalBackend(Backend):
    """A store in a local (or network-mounted POSIX) folder."""

    def __init__(self, root: Path, location: str) -> None:
        self.root = root
        self.location = location
        self.local_path = root
        self._filesystem: pafs.FileSystem | None = None

    @property
    def filesystem(self) -> pafs.FileSystem:
        if self._filesystem is None:
            import pyarrow.fs as pafs

            self._filesystem = pafs.LocalFileSystem()
        return self._filesystem

    def _p(self, rel: str) -> Path:
        return self.root / rel

    def fs_path(self, rel: str) -> str:
        return str(self._p(rel))

    def read_bytes(self, rel: str) -> bytes | None:
        try:
            return self._p(rel).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    @contextmanager
    def atomic_writer(self, rel: str, *, durable: bool = True) -> Iterator[BinaryIO]:
        target = self._p(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / new_temp_name(target.name)
        try:
            with open(tmp, "wb") as fh:
                yield fh
                if durable:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def download(self, rel: str, dest: Path) -> None:
        _atomic_local_copy(self._p(rel), dest)

    def size(self, rel: str) -> int | None:
        try:
            st = self._p(rel).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return st.st_size

    def list_files(self, rel_dir: str) -> list[FileEntry]:
        try:
            entries = list(os.scandir(self._p(rel_dir)))
        except (FileNotFoundError, NotADirectoryError):
            return []
        out = []
        for e in entries:
            if is_temporary(e.name):
                continue
            try:
                if e.is_file():
                    out.append(FileEntry(e.name, e.stat().st_size))
            except FileNotFoundError:
                continue  # removed (e.g. by compaction) while listing
        return out

    def list_dirs(self, rel_dir: str) -> list[str]:
        try:
            return [e.name for e in os.scandir(self._p(rel_dir)) if e.is_dir()]
        except (FileNotFoundError, NotADirectoryError):
            return []

    def delete(self, rel: str) -> None:
        self._p(rel).unlink(missing_ok=True)

    def move(self, src: str, dst: str) -> None:
        self._p(dst).parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._p(src), self._p(dst))

    def root_state(self) -> str:
        if not self.root.exists():
            return "missing"
        if not self.root.is_dir():
            return "nonempty"
        return "nonempty" if any(self.root.iterdir()) else "empty"


def _atomic_local_copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / new_temp_name(dest.name)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
