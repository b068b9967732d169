"""The study of a sweep whose store is an object store (``s3://``) and that has no ``--storage``.

Optuna's journal needs a local file with working locks, which an object store is not. So
the driver keeps the study in a journal file in a local temporary folder and copies it to
the store, as ``sweeps/<id>/optuna.journal`` (where a local store keeps it), after a write
when the last copy is older than :data:`PUSH_EVERY_S` (or ten times the last upload's
duration, whichever is longer, so uploads never take more than a tenth of the time) and
when the sweep ends. ``sweep status``, plots and ``sweep resume`` on any machine start
from that copy.

A copy can be behind: trials asked or finished after it are not in it. The execution
records are the truth, so ``resume`` adds to the copied study, before it settles what a
killed driver left running, every execution of the sweep the copy does not know
(:func:`adopt_executions`): each becomes a running trial with its execution id, under the
trial number the record carries, and is then settled like any running trial (a finished
one told, an unfinished one re-run with the same parameters). Trial numbers never asked
in the copy and never recorded are filled with ``interrupted`` trials, which do not count.
So a resumed sweep still ends at exactly ``--trials`` trials, none run twice.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import weakref
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import BaseJournalBackend, JournalFileBackend
from optuna.trial import TrialState, create_trial

from sweeper.errors import StoreError
from sweeper.execution.ids import new_execution_id
from sweeper.status import Status
from sweeper.store import RecordStore
from sweeper.sweep.state import DriverJournal

#: The shortest time between two copies of the journal to the store.
PUSH_EVERY_S = 2.0
#: Execution ids made this long before the sweep's creation are still looked at on resume
#: (the clocks of the machines that resume and that started the sweep may differ).
CLOCK_SLACK_MS = 10 * 60 * 1000


class StoreJournal(BaseJournalBackend):
    """A journal file in a local temporary folder, copied to the store now and then.

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


def journal_storage(store: RecordStore, sweep_id: str, *, writer: bool) -> JournalStorage:
    """The sweep's study from the store's copy; a ``writer`` (the driver) copies it back."""
    backend = StoreJournal(store, sweep_id, push_every_s=PUSH_EVERY_S if writer else None)
    return JournalStorage(backend)


def is_copy(storage: Any) -> bool:
    """Whether a study storage is a copy of a store's journal (:func:`journal_storage`)."""
    return isinstance(getattr(storage, "_backend", None), StoreJournal)


def push(storage: Any) -> None:
    """Copy a driver's study to the store now, when it is a :class:`StoreJournal`'s."""
    if is_copy(storage):
        storage._backend.push()


def _created_ms(created_at: str | None) -> int:
    try:
        return int(datetime.fromisoformat(str(created_at)).timestamp() * 1000)
    except ValueError:
        return 0


def _trial_params(
    parameters: Mapping[str, Any], distributions: Mapping[str, BaseDistribution]
) -> tuple[dict[str, Any], dict[str, BaseDistribution]]:
    """The record's values of the searched parameters that their distributions admit."""
    params: dict[str, Any] = {}
    used: dict[str, BaseDistribution] = {}
    for name, dist in distributions.items():
        if name not in parameters:
            continue
        try:
            if dist._contains(dist.to_internal_repr(parameters[name])):
                params[name] = parameters[name]
                used[name] = dist
        except (ValueError, TypeError):
            continue
    return params, used


def adopt_executions(
    study: optuna.Study,
    store: RecordStore,
    sweep_id: str,
    distributions: Mapping[str, BaseDistribution],
    created_at: str | None,
) -> int:
    """Add the sweep's executions the study does not know as running trials; how many.

    See the module docstring. Safe on a study that knows every execution (adds nothing).
    """
    trials = study.get_trials(deepcopy=False)
    known = {t.user_attrs.get("execution_id") for t in trials}
    since = new_execution_id(now_ms=max(0, _created_ms(created_at) - CLOCK_SLACK_MS))[:10]
    found: dict[int, Any] = {}
    for execution_id in store.execution_ids(since=since):
        if execution_id in known:
            continue
        try:
            record = store.get_record(execution_id)
        except (StoreError, ValueError):
            continue
        if record is None or record.sweep_id != sweep_id or record.trial_number is None:
            continue
        number = int(record.trial_number)
        if number not in found or record.id > found[number].id:
            found[number] = record  # the latest attempt of the number
    storage = study._storage
    adopted = 0
    for number in sorted(found):
        record = found[number]
        attrs = {"execution_id": record.id, "attempt": int(record.attempt or 1)}
        trials = study.get_trials(deepcopy=False)
        if number < len(trials):
            existing = trials[number]
            if existing.state == TrialState.WAITING:
                # an enqueued trial (a retry) that the killed driver had asked
                storage.set_trial_state_values(existing._trial_id, state=TrialState.RUNNING)
            elif existing.state != TrialState.RUNNING or existing.user_attrs.get("execution_id"):
                continue
            for key, value in attrs.items():
                storage.set_trial_user_attr(existing._trial_id, key, value)
            adopted += 1
            continue
        for _ in range(len(trials), number):  # asked, never recorded: not counted
            study.add_trial(
                create_trial(state=TrialState.FAIL, user_attrs={"outcome": Status.INTERRUPTED})
            )
        params, used = _trial_params(record.parameters, distributions)
        study.add_trial(
            create_trial(
                state=TrialState.RUNNING, params=params, distributions=used, user_attrs=attrs
            )
        )
        adopted += 1
    return adopted
