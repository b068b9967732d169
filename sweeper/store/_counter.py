"""The per-store execution counter (#1, #2, ...).

Local stores keep the last number in ``counter/value`` and update it under an ``flock`` on
``counter/lock``: unique and strictly increasing across processes.

Object stores cannot lock, so each number is *claimed*: a process writes an empty object
``counter/claims/<n>/<uuid>`` and then lists ``counter/claims/<n>/``; it owns ``n`` only when
its own claim is the only one there. With read-after-write consistent listing (S3 since
2020, GCS, Azure) two processes can never both own ``n``: each lists after it wrote, so the
later lister sees the earlier claim. Both may lose a race; they then move on to ``n + 1``,
which leaves a gap but never a duplicate. ``counter/value`` is only a hint of where to start.
On storage without consistent listing the remote counter is best effort.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable

from ._backend import Backend
from ._locks import store_lock

VALUE = "counter/value"
LOCK = "counter/lock"
CLAIMS = "counter/claims"


def _read_value(backend: Backend) -> int | None:
    raw = backend.read_bytes(VALUE)
    if raw is None:
        return None
    try:
        return int(raw.decode().strip())
    except ValueError:
        return None


def allocate(backend: Backend, recover: Callable[[], int]) -> int:
    """The next counter value; ``recover()`` gives the highest number used if the value is lost."""
    if backend.local_path is not None:
        return _allocate_locked(backend, recover)
    return _allocate_by_claim(backend, recover)


def _allocate_locked(backend: Backend, recover: Callable[[], int]) -> int:
    with store_lock(backend, LOCK):
        current = _read_value(backend)
        if current is None:
            current = recover()
        value = current + 1
        backend.write_bytes(VALUE, f"{value}\n".encode())
        return value


def _allocate_by_claim(backend: Backend, recover: Callable[[], int]) -> int:
    hint = _read_value(backend)
    candidate = (recover() if hint is None else hint) + 1
    me = uuid.uuid4().hex
    while True:
        folder = f"{CLAIMS}/{candidate:012d}"
        if backend.list_files(folder):
            candidate += 1
            continue
        backend.write_bytes(f"{folder}/{me}", b"")
        claims = backend.list_files(folder)
        if [c.name for c in claims] == [me]:
            backend.write_bytes(VALUE, f"{candidate}\n".encode())
            return candidate
        candidate += 1
        time.sleep(random.uniform(0, 0.05))
