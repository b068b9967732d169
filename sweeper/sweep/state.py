"""A sweep's durable state: its options and code in the store, its Optuna study in a journal.

``sweeps/<sweep_id>/sweep.json`` keeps what the sweep was started with; the study lives in
``sweeps/<sweep_id>/optuna.journal`` (Optuna's append-only journal file, safe against a
killed writer) unless ``--storage`` names a database URL. The one driver of a sweep holds
``sweeps/<sweep_id>/driver.lock`` while it runs (:func:`sole_driver`), so it is the
journal's only writer.
"""

from __future__ import annotations

import json
import os
import weakref
from collections import Counter
from collections.abc import Generator, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import get_lock_file
from optuna.trial import TrialState

from sweeper.errors import StoreError, SweeperError
from sweeper.status import Status
from sweeper.store import RecordStore
from sweeper.store._locks import file_lock
from sweeper.sweep.failures import FailureGroup, class_counts, study_failures

#: Outcomes that count towards a sweep's ``--trials``.
COUNTED_OUTCOMES = (Status.COMPLETE, Status.ERROR, Status.PRUNED)


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


#: The lock file a sweep's driver holds while it runs (next to its journal).
DRIVER_LOCK = "driver.lock"


@contextmanager
def sole_driver(store: RecordStore, sweep_id: str) -> Iterator[None]:
    """Be the sweep's only driver for the block, or raise a :class:`SweeperError`.

    An exclusive ``flock`` on ``sweeps/<id>/driver.lock``: a second ``sweep resume`` of a
    sweep that is running is refused (two drivers would both run its remaining trials).
    The kernel releases it when the driver exits, ``kill -9`` included, so resume after a
    killed driver is never blocked. An object store has no lock: there each driver works
    on its own copy of the journal (:mod:`sweeper.sweep.remote_study`).
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

    ``writer``: the sweep's driver, inside :func:`sole_driver` (a :class:`DriverJournal`).
    """
    if storage_url:
        return storage_url
    if store.local_path is None:  # an object store: a local copy of the store's journal
        from sweeper.sweep.remote_study import journal_storage

        return journal_storage(store, sweep_id, writer=writer)
    path = str(store.sweep_journal(sweep_id))
    return JournalStorage(DriverJournal(path) if writer else JournalFile(path))


def load_study(store: RecordStore, sweep_id: str, storage_url: str | None = None) -> optuna.Study:
    """Open an existing sweep's study (for status, resume and plots)."""
    try:
        return optuna.load_study(
            study_name=sweep_id, storage=study_storage(store, sweep_id, storage_url)
        )
    except KeyError:
        raise StoreError(f'unknown sweep "{sweep_id}" in {store.location}') from None


def sweep_failures(store: RecordStore, sweep_id: str) -> list[FailureGroup]:
    """The failed trials of a sweep in ``store``, grouped by reason, most common first."""
    saved = store.get_sweep(sweep_id)
    if not saved:
        raise StoreError(f'unknown sweep "{sweep_id}" in {store.location}')
    storage = (saved.get("options") or {}).get("storage")
    return study_failures(load_study(store, sweep_id, storage))


#: The outcome (user attribute) of a trial a warm start added: history, not one of the
#: sweep's own trials (see :mod:`sweeper.sweep.history`).
WARM_START = "warm_start"


def is_own_trial(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a trial is one of the sweep's own (not added by a warm start)."""
    return trial.user_attrs.get("outcome") != WARM_START


#: The outcome a finished trial has when none was recorded (only failures record theirs,
#: which saves a journal write, with its fsync, for every complete or pruned trial).
DEFAULT_OUTCOMES = {
    TrialState.COMPLETE: Status.COMPLETE,
    TrialState.PRUNED: Status.PRUNED,
    TrialState.FAIL: Status.ERROR,
}


def outcome_counts(study: optuna.Study) -> dict[str, int]:
    """How many trials ended each way (complete, error, pruned, interrupted) or are running."""
    counts: Counter[str] = Counter()
    for trial in study.get_trials(deepcopy=False):
        if trial.state == TrialState.RUNNING and "execution_id" in trial.user_attrs:
            counts["running"] += 1
        elif trial.state in (TrialState.WAITING, TrialState.RUNNING):  # asked, not started yet
            counts["waiting"] += 1
        else:
            default = DEFAULT_OUTCOMES.get(trial.state, trial.state.name.lower())
            counts[str(trial.user_attrs.get("outcome", default))] += 1
    return dict(counts)


def _trial_summary(trial: optuna.trial.FrozenTrial, metrics: list[str]) -> dict[str, Any]:
    values = trial.values or []
    return {
        "execution_id": trial.user_attrs.get("execution_id"),
        "trial_number": trial.number,
        "value": values[0] if len(values) == 1 else None,
        "values": dict(zip(metrics, values, strict=False)),
        "parameters": dict(trial.params),
    }


def own_best(
    study: optuna.Study, directions: list[str]
) -> optuna.trial.FrozenTrial | list[optuna.trial.FrozenTrial] | None:
    """The best of the sweep's own trials (one objective), or its Pareto front (several).

    Trials a warm start added are left out: they are history, not the sweep's result. A
    Pareto front keeps the sweep's trials on the front of all of them.
    """
    if len(directions) > 1:
        try:
            return [t for t in study.best_trials if is_own_trial(t)]
        except ValueError:
            return []
    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None and is_own_trial(t)
    ]
    if not complete:
        return None
    pick = max if directions and directions[0] == "maximize" else min
    return pick(complete, key=lambda t: float(t.value or 0.0))


def summarize(
    study: optuna.Study, sweep_id: str, metrics: list[str], directions: list[str] | None = None
) -> dict[str, Any]:
    """Counts, best trial(s) and failure reasons of a study, in the ``sweep --json`` shape.

    ``directions`` default to the study's (they are the same unless the sweep is unranked).
    """
    counts = outcome_counts(study)
    directions = directions or [d.name.lower() for d in study.directions]
    best: Any = None
    found = own_best(study, directions) if metrics else None
    if isinstance(found, list):
        best = [_trial_summary(t, metrics) for t in found]
    elif found is not None:
        best = _trial_summary(found, metrics)
    elif len(metrics) > 1:
        best = []
    groups = study_failures(study)
    return {
        "sweep_id": sweep_id,
        "trials": {
            "complete": counts.get("complete", 0),
            "error": counts.get("error", 0),
            "pruned": counts.get("pruned", 0),
            "running": counts.get("running", 0),
        },
        "best": best,
        "failures": [group.to_dict() for group in groups],
        "failure_classes": class_counts(groups),
        "reused": sum(
            1 for t in study.get_trials(deepcopy=False) if t.user_attrs.get("reused_from")
        ),
    }


class SweepState:
    """Reads and writes a sweep's saved state (``sweep.json``, through the store)."""

    def __init__(self, store: RecordStore, sweep_id: str) -> None:
        self.store = store
        self.sweep_id = sweep_id
        existing = store.get_sweep(sweep_id)
        self.data: dict[str, Any] = existing or {}
        self.created_at: str = self.data.get("created_at") or datetime.now(timezone.utc).isoformat()

    def create(
        self, options: dict[str, Any], code_version: str, code_archive: str | None, space_json: str
    ) -> None:
        """Record a new sweep before its first trial starts."""
        self.data = {
            "sweep_id": self.sweep_id,
            "options": options,
            "code_version": code_version,
            "code_archive": code_archive,
            "search_space": space_json,
            "status": Status.RUNNING,
            "created_at": self.created_at,
        }
        self.store.put_sweep(self.sweep_id, self.data)

    def update(self, **changes: Any) -> None:
        """Change fields of the saved state (e.g. the status at the end)."""
        self.data.update(changes, updated_at=datetime.now(timezone.utc).isoformat())
        self.store.put_sweep(self.sweep_id, self.data)
