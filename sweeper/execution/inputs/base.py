"""What the input code reads and returns, and :class:`Source`, one file an input URI names.

Each scheme's module (:mod:`.local`, :mod:`.http`, :mod:`.objects`, :mod:`.datum`) lists the
files a URI names as :class:`Source` subclasses that know how to bring their file into the
:class:`~sweeper.execution.inputs.cache.InputCache`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from sweeper.errors import InputError

if TYPE_CHECKING:
    from sweeper.execution.inputs.cache import InputCache

#: Bytes read at a time from any stream an input comes from.
CHUNK = 1 << 20


class InputLike(Protocol):
    """What the input code reads from a step input (``sweeper.config.Input`` fits)."""

    @property
    def name(self) -> str: ...
    @property
    def default(self) -> tuple[str, ...]: ...
    @property
    def optional(self) -> bool: ...
    @property
    def filename(self) -> str | None: ...
    @property
    def keep_directories(self) -> str: ...


class BlobStore(Protocol):
    """The part of ``sweeper.store.Store`` that lineage and dataset URIs need."""

    def has_blob(self, sha256: str) -> bool: ...
    def fetch_blob(self, sha256: str, dest: Path) -> Any: ...
    def blob_local_path(self, sha256: str) -> Path | None: ...
    def find_execution(self, ref: str) -> Mapping[str, Any]: ...
    def read_dataset(self, name: str, columns: list[str] | None = None) -> Any: ...


class StagingStore(Protocol):
    """The part of ``sweeper.store.Store`` that staging local inputs needs."""

    def put_file(self, path: str | os.PathLike[str]) -> tuple[str, int]: ...


@dataclass(frozen=True)
class StagedFile:
    """A local input file the driver put into the store, for a node without the driver's disk.

    ``uri``, ``full`` and ``suffix`` are what the file's local source would have given
    (the match of a wildcard, its whole path, its path after the wildcard's fixed prefix),
    so the file lands where it would on the driver and the record names it the same way.
    """

    uri: str
    full: str
    suffix: str
    sha256: str
    size: int


@dataclass(frozen=True)
class InputFile:
    """One file placed under ``inputs/``.

    ``path`` is relative to the inputs folder and starts with the input's name
    (``"dataset/mnist.npz"``); ``uri`` is where this very file came from (for a wildcard,
    the match, not the pattern), with any password in it masked.
    """

    name: str
    uri: str
    path: str
    sha256: str
    size: int
    producer_execution_id: str | None = None


@dataclass(frozen=True)
class PlainInput:
    """An input the step does not declare: optional, no rename, flat layout."""

    name: str
    default: tuple[str, ...] = ()
    optional: bool = True
    filename: str | None = None
    keep_directories: str = "none"


class Source:
    """One concrete file an input URI resolved to."""

    def __init__(self, name: str, uri: str, full: str, suffix: str) -> None:
        self.name = name
        self.uri = uri
        self._full = full
        self._suffix = suffix
        self.producer_execution_id: str | None = None

    def relative(self, keep_directories: str) -> str:
        """The destination under ``inputs/<name>/`` for a ``keep-directories`` mode."""
        if keep_directories == "full":
            return self._full
        if keep_directories == "suffix":
            return self._suffix
        return PurePosixPath(self._full).name if self._full else ""

    def fetch(self, cache: InputCache) -> tuple[str, int]:
        """Bring the file into the cache; return its sha256 and size."""
        raise NotImplementedError

    def error(self, exc: BaseException | str) -> InputError:
        """The error that says this file cannot be read, and why."""
        return InputError(f'input "{self.name}": cannot read {self.uri}: {exc}')


def chunks(stream: BinaryIO | Any) -> Iterator[bytes]:
    """The stream's content, :data:`CHUNK` bytes at a time."""
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            return
        yield chunk


__all__ = [
    "BlobStore",
    "InputFile",
    "InputLike",
    "PlainInput",
    "Source",
    "StagedFile",
    "StagingStore",
    "chunks",
]
