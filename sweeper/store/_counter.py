"""The per-store execution counter (#1, #2, ...).

Local stores keep the last number in ``counter/value`` and update it under an ``flock`` on
``counter/lock``: unique and strictly increasing across processes.

The value is written without an fsync (a sweep's actors take a number per execution, and
the fsync was one of their two per execution). A ``kill -9`` cannot lose it: the file is
replaced by a rename and the page cache outlives the process. Only a crash of the kernel
can (a power loss, a panic), and a crash means a new boot. So ``counter/epoch`` names the
kernel boot (``/proc/sys/kernel/random/boot_id``) under which values are written without
an fsync, itself written with one (and its folder's entry too). Under the boot it names
the value is trusted. Under any other boot (the machine restarted, or another machine
shares the store's folder) or with no value, the value is rebuilt from the records:
the highest number of the execution records written since the epoch was (and of the
``executions`` rows), written with an fsync, and the epoch then names this boot. Where
there is no boot id (not Linux), every value is written with an fsync, as before.

Object stores cannot lock, so each number is *claimed*: a process writes an empty object
``counter/claims/<n>/<uuid>`` and then lists ``counter/claims/<n>/``; it owns ``n`` only when
its own claim is the only one there. With read-after-write consistent listing (S3 since
2020, GCS, Azure) two processes can never both own ``n``: each lists after it wrote, so the
later lister sees the earlier claim. Both may lose a race; they then move on to ``n + 1``,
which leaves a gap but never a duplicate. ``counter/value`` is only a hint of where to start.
On storage without consistent listing the remote counter is best effort.
"""

from __future__ import annotations

import functools
import json
import os
import random
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from ._backend import Backend
from ._locks import store_lock

VALUE = "counter/value"
LOCK = "counter/lock"
EPOCH = "counter/epoch"
CLAIMS = "counter/claims"
#: Where Linux says which boot of the kernel is running (a new id at every boot).
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")

#: Seconds before the epoch whose execution folders a rebuild still reads (file systems
#: that keep times to the second or two).
CLOCK_MARGIN_S = 60.0

#: What rebuilds the highest number used from the records: given the time (the store's
#: file system clock) since which records may hold numbers the value does not know of, or
#: None to read them all.
Rebuild = Callable[[float | None], int]


@functools.cache
def boot_id() -> str | None:
    """The running kernel's boot id, or None where the system has none."""
    try:
        return BOOT_ID.read_text().strip() or None
    except OSError:
        return None


def _read_value(backend: Backend) -> int | None:
    raw = backend.read_bytes(VALUE)
    if raw is None:
        return None
    try:
        return int(raw.decode().strip())
    except ValueError:
        return None


def allocate(backend: Backend, rebuild: Rebuild) -> int:
    """The next counter value; ``rebuild`` gives the highest number used when the value is
    lost or may be stale (see the module doc)."""
    if backend.local_path is not None:
        return _allocate_locked(backend, rebuild)
    return _allocate_by_claim(backend, lambda: rebuild(None))


def _allocate_locked(backend: Backend, rebuild: Rebuild) -> int:
    with store_lock(backend, LOCK):
        current = _read_value(backend)
        boot = boot_id()
        if boot is None:  # no way to tell a restart: every value is durable
            value = (rebuild(None) if current is None else current) + 1
            backend.write_bytes(VALUE, f"{value}\n".encode())
            return value
        epoch, since = _read_epoch(backend)
        if epoch == boot and current is not None:
            value = current + 1
            backend.write_bytes(VALUE, f"{value}\n".encode(), durable=False)
            return value
        if current is None:  # lost or unreadable: every record may hold the highest number
            recovered = rebuild(None)
        elif epoch is None:
            recovered = current  # written with an fsync (a store of a sweeper without epochs)
        else:  # the epoch's boot ended, or another machine's: what was written since counts
            recovered = max(current, rebuild(since))
        value = recovered + 1
        backend.write_bytes(VALUE, f"{value}\n".encode())
        _write_epoch(backend, boot)
        return value


def _read_epoch(backend: Backend) -> tuple[str | None, float | None]:
    """The boot the epoch names and when it was written (None, None: no epoch)."""
    assert backend.local_path is not None
    path = backend.local_path / EPOCH
    try:
        written = path.stat().st_mtime
        return path.read_text().strip() or None, written
    except (OSError, UnicodeDecodeError):
        return None, None


def _write_epoch(backend: Backend, boot: str) -> None:
    """Name ``boot`` in the epoch, on disk before any value is written without an fsync."""
    assert backend.local_path is not None
    backend.write_bytes(EPOCH, f"{boot}\n".encode())
    folder = os.open(backend.local_path / EPOCH.rsplit("/", 1)[0], os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename too: a lost epoch would trust an old value
    finally:
        os.close(folder)


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


def recorded_max(backend: Backend, since: float | None) -> int:
    """The highest number in the ``execution.json`` of the execution folders changed since
    ``since`` (a time of the store's file system; None, or a remote store: every folder).

    A record is written after its number was taken, and writing it (a rename into its
    folder) changes the folder's time; :data:`CLOCK_MARGIN_S` covers coarse clocks.
    """
    highest = 0
    local = backend.local_path
    for name in backend.list_dirs("executions"):
        if name.startswith("."):
            continue
        if since is not None and local is not None:
            try:
                if (local / "executions" / name).stat().st_mtime < since - CLOCK_MARGIN_S:
                    continue
            except OSError:
                continue  # removed meanwhile
        try:
            data = json.loads(backend.read_bytes(f"executions/{name}/execution.json") or b"{}")
        except (ValueError, UnicodeDecodeError):
            continue  # an unfinished record cut by a crash: it holds no number
        number = data.get("counter") if isinstance(data, dict) else None
        if isinstance(number, int) and not isinstance(number, bool):
            highest = max(highest, number)
    return highest
