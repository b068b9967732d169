"""Where a sweep's Optuna study lives: a journal in the store, its driver's lock, its copies.

The study lives in ``sweeps/<sweep_id>/optuna.journal`` (Optuna's append-only journal file,
safe against a killed writer) unless ``--storage`` names a database URL. The one driver of a
sweep holds ``sweeps/<sweep_id>/driver.lock`` while it runs (:func:`sole_driver`), so it is
the journal's only writer.

An object store (``s3://``) has neither a local file nor working locks: there the driver
keeps the study in a journal file in a local temporary folder and copies it to the store,
where a local store keeps it, after a write when the last copy is older than
:data:`PUSH_EVERY_S` (or ten times the last upload's duration, whichever is longer, so
uploads never take more than a tenth of the time) and when the sweep ends. ``sweep status``,
plots and ``sweep resume`` on any machine start from that copy. A copy can be behind the
execution records, which are the truth: ``resume`` catches it up from them
(:func:`sweeper.sweep.outcomes.adopt_executions`).

Nothing here imports Ray or the runner: ``sweep status`` opens studies through this module.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import warnings
import weakref
from collections.abc import Generator, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import BaseJournalBackend, JournalFileBackend
from optuna.storages.journal._file import get_lock_file
from optuna.study import StudyDirection

from sweeper.errors import StoreError, SweeperError
from sweeper.store import RecordStore
from sweeper.store._locks import file_lock
from sweeper.sweep.failures import FailureGroup, study_failures
from sweeper.sweep.indexed_storage import IndexedCachedStorage, IndexedJournalStorage

#: The lock file a sweep's driver holds while it runs (next to its journal).
DRIVER_LOCK = "driver.lock"
#: The shortest time between two copies of the journal to an object store.
PUSH_EVERY_S = 2.0


class JournalFile(JournalFileBackend):
    """Optuna's journal file, appended under its lock but without an fsync per entry.

    A sweep writes about five entries per trial; their fsyncs were a tenth of the driver's
    time per trial. A ``kill -9`` loses nothing that ``write`` returned (the data is in the
    kernel's page cache); only a power loss can drop the last entries, and then resume
    settles by the execution records, which are written with an fsync: the trials the
    journal forgot are asked again and the sweep still ends at exactly ``--trials``.
    """

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        """Append entries, one JSON line each, in one ``write`` (whole lines for readers)."""
        text = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs)
        with get_lock_file(self._lock), open(self._file_path, "ab") as handle:
            handle.write(text.encode("utf-8"))


class DriverJournal(JournalFileBackend):
    """The journal as the sweep's driver writes it: no file lock, one open file, no fsync.

    The driver holds the sweep's :func:`sole_driver` lock, so no other sweeper process
    writes this journal; Optuna's lock (a symlink made and removed around every entry)
    was a quarter of the driver's time per trial. Each append is one ``write`` of whole
    lines to a file opened with ``O_APPEND``, which the kernel never interleaves with
    another process's appends (say optuna-dashboard's note, made under Optuna's lock), so
    readers see whole lines, as with :class:`JournalFile`; durability is
    :class:`JournalFile`'s. Reading skips the file when it has not grown since the last
    read (Optuna re-reads it before and after every operation).
    """

    def __init__(self, file_path: str) -> None:
        super().__init__(file_path)
        self._appender = open(file_path, "ab", buffering=0)  # noqa: SIM115
        weakref.finalize(self, self._appender.close)  # with the storage, not before

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        """Append entries, one JSON line each, in one ``write``."""
        text = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs)
        data = memoryview(text.encode("utf-8"))
        while data:  # a regular file takes it all at once; a short write goes on after it
            data = data[self._appender.write(data) or 0 :]

    def read_logs(self, log_number_from: int) -> Generator[dict[str, Any], None, None]:
        """Optuna's read, unless nothing was appended since it read up to ``log_number_from``."""
        offset = self._log_number_offset.get(log_number_from)
        if offset is not None and offset == os.fstat(self._appender.fileno()).st_size:
            return
        yield from super().read_logs(log_number_from)


class StoreJournal(BaseJournalBackend):
    """A journal file in a local temporary folder, copied to an object store now and then.

    ``push_every_s`` None: a reader's copy, never written back.
    """

    def __init__(self, store: RecordStore, sweep_id: str, *, push_every_s: float | None) -> None:
        self.store = store
        self.sweep_id = sweep_id
        folder = Path(tempfile.mkdtemp(prefix="sweeper-study-"))
        weakref.finalize(self, shutil.rmtree, folder, True)
        self.path = folder / "study.journal"  # a local working copy, not in the store
        store.fetch_sweep_journal(sweep_id, self.path)  # none yet for a new sweep
        # only this driver writes its working copy: no lock nor fsync per entry (the
        # records are the truth on resume, see the module doc)
        self.file = (
            JournalFileBackend(str(self.path))
            if push_every_s is None
            else DriverJournal(str(self.path))
        )
        self.push_every_s = push_every_s
        self._pushed_at: float | None = None
        self._push_took = 0.0
        self._dirty = False

    def read_logs(self, log_number_from: int) -> Any:
        """Optuna's replay: from the local file."""
        return self.file.read_logs(log_number_from)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        """Optuna's write: to the local file, then a copy to the store when one is due."""
        self.file.append_logs(logs)
        if self.push_every_s is None:
            return
        self._dirty = True
        wait = max(self.push_every_s, 10 * self._push_took)
        if self._pushed_at is None or time.monotonic() - self._pushed_at >= wait:
            self.push()

    def push(self) -> None:
        """Copy the journal to the store now (whole lines only: written between appends)."""
        if self.push_every_s is None or not self._dirty:
            return
        started = time.monotonic()
        self.store.put_sweep_journal(self.sweep_id, self.path)
        self._pushed_at = time.monotonic()
        self._push_took = self._pushed_at - started
        self._dirty = False


class CopiedStorage(IndexedJournalStorage):
    """The study storage of a :class:`StoreJournal`: a copy of the store's journal."""

    def __init__(self, journal: StoreJournal) -> None:
        super().__init__(journal)
        self.journal = journal

    def push(self) -> None:
        """Copy a driver's study to the store now."""
        self.journal.push()


@contextmanager
def sole_driver(store: RecordStore, sweep_id: str) -> Iterator[None]:
    """Be the sweep's only driver for the block, or raise a :class:`SweeperError`.

    An exclusive ``flock`` on ``sweeps/<id>/driver.lock``: a second ``sweep resume`` of a
    sweep that is running is refused (two drivers would both run its remaining trials).
    The kernel releases it when the driver exits, ``kill -9`` included, so resume after a
    killed driver is never blocked. An object store has no lock: there each driver works
    on its own copy of the journal (:class:`StoreJournal`).
    """
    if store.local_path is None:
        yield
        return
    path = store.sweep_journal(sweep_id).with_name(DRIVER_LOCK)
    with ExitStack() as stack:
        try:
            stack.enter_context(file_lock(path, wait=False))
        except BlockingIOError:
            raise SweeperError(
                f"sweep {sweep_id} is running in another process on this store: wait for "
                f"it to end (`sweep status {sweep_id}` follows it) or stop it, then resume it"
            ) from None
        yield


def study_storage(
    store: RecordStore, sweep_id: str, storage_url: str | None, *, writer: bool = False
) -> Any:
    """The Optuna storage of a sweep: ``--storage`` when given, else a journal in the store.

    ``writer``: the sweep's driver, inside :func:`sole_driver` (a :class:`DriverJournal`, or
    a :class:`CopiedStorage` that copies itself back to an object store), whose storage
    reads its trials through an index (:mod:`sweeper.sweep.indexed_storage`).
    """
    if storage_url:
        if not writer:
            return storage_url
        # Optuna's own cache of the database (what the URL gives), kept by the driver
        return IndexedCachedStorage(RDBStorage(storage_url))
    if store.local_path is None:  # an object store: a local copy of the store's journal
        push_every_s = PUSH_EVERY_S if writer else None
        return CopiedStorage(StoreJournal(store, sweep_id, push_every_s=push_every_s))
    path = str(store.sweep_journal(sweep_id))
    if writer:
        return IndexedJournalStorage(DriverJournal(path))
    return JournalStorage(JournalFile(path))


def is_copy(storage: Any) -> bool:
    """Whether a study storage is a copy of an object store's journal (it may be behind)."""
    return isinstance(storage, CopiedStorage)


def push(storage: Any) -> None:
    """Copy a driver's study to the store now, when its storage is a copy (else nothing)."""
    if isinstance(storage, CopiedStorage):
        storage.push()


def load_study(store: RecordStore, sweep_id: str, storage_url: str | None = None) -> optuna.Study:
    """Open an existing sweep's study (for status, resume and plots)."""
    try:
        return optuna.load_study(
            study_name=sweep_id, storage=study_storage(store, sweep_id, storage_url)
        )
    except KeyError:
        raise StoreError(f'unknown sweep "{sweep_id}" in {store.location}') from None


#: The study's name for the objective of a sweep without a metric (plots, dashboard).
UNRANKED = "unranked"


def open_study(
    storage: Any,
    sweep_id: str,
    *,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    metrics: Sequence[str],
    directions: Sequence[str],
) -> optuna.Study:
    """The driver's study of a sweep: created on its first start, loaded on a resume.

    Optuna's study needs an objective: an unranked sweep (no metric) gets one that never
    varies, named :data:`UNRANKED`.
    """
    study = optuna.create_study(
        study_name=sweep_id,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        # an unranked sweep's one objective never varies: its direction does not matter
        directions=[StudyDirection[d.upper()] for d in directions] or [StudyDirection.MINIMIZE],
        load_if_exists=True,
    )
    names = list(metrics) or [UNRANKED]
    if study.metric_names != names:
        with warnings.catch_warnings():  # experimental in Optuna, stable in practice
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # names the axes in plots and the dashboard ("loss", not "Objective 0")
            study.set_metric_names(names)
    return study


def sweep_failures(store: RecordStore, sweep_id: str) -> list[FailureGroup]:
    """The failed trials of a sweep in ``store``, grouped by reason, most common first."""
    saved = store.get_sweep(sweep_id)
    if not saved:
        raise StoreError(f'unknown sweep "{sweep_id}" in {store.location}')
    storage = (saved.get("options") or {}).get("storage")
    return study_failures(load_study(store, sweep_id, storage))
