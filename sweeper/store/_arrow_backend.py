"""The store backend on a pyarrow filesystem (an object store: s3://, gs://, ...).

Its own module so that a local store (:class:`~sweeper.store._backend.LocalBackend`) opens
without importing pyarrow; the guarantees of both are in :mod:`sweeper.store._backend`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import pyarrow.fs as pafs

from sweeper.errors import StoreError

from ._backend import Backend, FileEntry, is_temporary, new_temp_name


class ArrowBackend(Backend):
    """A store on any pyarrow filesystem, typically an object store (s3://bucket/prefix)."""

    def __init__(self, fs: pafs.FileSystem, root: str, location: str) -> None:
        self._filesystem = fs
        self.root = root.rstrip("/")
        self.location = location
        self.local_path = None

    @property
    def filesystem(self) -> pafs.FileSystem:
        return self._filesystem

    def fs_path(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def _info(self, rel: str) -> pafs.FileInfo:
        return self.filesystem.get_file_info(self.fs_path(rel))

    def read_bytes(self, rel: str) -> bytes | None:
        try:
            with self.filesystem.open_input_stream(self.fs_path(rel)) as fh:
                return bytes(fh.read())
        except FileNotFoundError:
            return None
        except OSError:
            if self._info(rel).type == pafs.FileType.NotFound:
                return None
            raise

    @contextmanager
    def atomic_writer(self, rel: str, *, durable: bool = True) -> Iterator[BinaryIO]:
        # An object appears only once its upload is complete, and then it is stored.
        path = self.fs_path(rel)
        try:
            with self.filesystem.open_output_stream(path) as out:
                yield out  # type: ignore[misc]
        except BaseException:
            # Closing the stream on the way out published what it had: take it back down.
            # (A killed process never closes it, and an unfinished upload stays invisible.)
            _quiet_delete(self.filesystem, path)
            raise

    def download(self, rel: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / new_temp_name(dest.name)
        try:
            with self.filesystem.open_input_stream(self.fs_path(rel)) as src, open(tmp, "wb") as fh:
                while chunk := src.read(8 << 20):
                    fh.write(chunk)
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def size(self, rel: str) -> int | None:
        info = self._info(rel)
        if info.type != pafs.FileType.File:
            return None
        return int(info.size or 0)

    def _list(self, rel_dir: str) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(self.fs_path(rel_dir), allow_not_found=True, recursive=False)
        return list(self.filesystem.get_file_info(selector))

    def list_files(self, rel_dir: str) -> list[FileEntry]:
        return [
            FileEntry(i.base_name, int(i.size or 0))
            for i in self._list(rel_dir)
            if i.type == pafs.FileType.File and not is_temporary(i.base_name)
        ]

    def list_dirs(self, rel_dir: str) -> list[str]:
        return [i.base_name for i in self._list(rel_dir) if i.type == pafs.FileType.Directory]

    def delete(self, rel: str) -> None:
        _quiet_delete(self.filesystem, self.fs_path(rel))

    def move(self, src: str, dst: str) -> None:
        self.filesystem.move(self.fs_path(src), self.fs_path(dst))

    def root_state(self) -> str:
        try:
            entries = self._list("")
        except OSError as exc:
            raise StoreError(f"cannot read store at {self.location}: {exc}") from exc
        return "nonempty" if entries else "missing"


def _quiet_delete(fs: pafs.FileSystem, path: str) -> None:
    try:
        fs.delete_file(path)
    except (FileNotFoundError, OSError):
        pass
