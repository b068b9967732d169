"""Cross-process locks for the few operations that read, then write.

Locally this is ``fcntl.flock`` on a file under ``locks/`` (or ``counter/``): exclusive
across processes on one machine and, on most network filesystems, across machines. An
object store has no lock primitive; there the lock is a no-op and the callers document
what they guarantee without it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ._backend import Backend


@contextmanager
def file_lock(path: Path, *, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) for the block.

    ``wait=False``: raise :class:`BlockingIOError` at once when another process holds it.
    The kernel drops the lock when its holder dies, even by ``kill -9``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def store_lock(backend: Backend, rel: str) -> Iterator[None]:
    """An exclusive lock on a local store; nothing on a remote one (see the module doc)."""
    if backend.local_path is None:
        yield
        return
    with file_lock(backend.local_path / rel):
        yield
