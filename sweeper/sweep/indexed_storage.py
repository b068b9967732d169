"""The driver's Optuna storages: reads that neither walk every trial nor ask the database.

Optuna reads a study's trials several times per ask (the waiting ones when it asks, all of
them for the search space, the finished and running ones for TPE). Each read of its
journal loops over every trial in Python, filtering by state; each read of its database
cache asks the database for the new and unfinished trials (six queries), then filters and
sorts every trial: at 10,000 trials, milliseconds per read, three reads per trial.

A finished trial never changes (Optuna refuses any write to it), so :class:`TrialIndex`
keeps a study's finished trials in number order, per set of states asked for, and looks
again only at the trials that were not finished yet (those in flight) and the new ones.
The answer is what Optuna's own ``get_all_trials`` returns: the same trials, in the same
order. :class:`IndexedJournalStorage` is the driver's journal storage;
:class:`IndexedCachedStorage` (``--storage`` a database) also keeps its cache up to date
with the driver's own writes instead of asking the database again (a sweep's trials have
one writer). Readers (``sweep status``, plots) keep Optuna's storages. Nothing here changes
what is written, nor when: kill -9 and resume see the same study.
"""

from __future__ import annotations

import bisect
import copy
import json
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, cast

from optuna._typing import JSONSerializable
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage, JournalStorage
from optuna.storages._cached_storage import _CachedStorage
from optuna.trial import FrozenTrial, TrialState

#: A set of states asked for, as a key (None: every state).
StatesKey = frozenset[TrialState] | None
#: How to read a study's trial by its number.
TrialAt = Callable[[int], FrozenTrial]


def _number(trial: FrozenTrial) -> int:
    return trial.number


class TrialIndex:
    """One study's trials, numbered ``0..count-1``: the finished ones kept, the rest re-read.

    :meth:`update` is given how many trials the study has and how to read trial ``n``;
    it reads the new ones and those not finished at the last update.
    """

    def __init__(self) -> None:
        self.count = 0
        #: Trials not finished at the last update, by number (re-read at each update).
        self.open: dict[int, FrozenTrial] = {}
        #: Finished trials of each set of states asked for so far, in number order.
        self.finished: dict[StatesKey, list[FrozenTrial]] = {None: []}

    def update(self, count: int, trial_at: TrialAt) -> None:
        """Read the trials added since the last update and those not finished then."""
        for number in range(self.count, count):
            self.open[number] = trial_at(number)
        self.count = count
        for number in list(self.open):
            trial = self.open[number] = trial_at(number)
            if trial.state.is_finished():
                del self.open[number]
                for states, trials in self.finished.items():
                    if states is None or trial.state in states:
                        bisect.insort(trials, trial, key=_number)

    def trials(self, states: Container[TrialState] | None) -> list[FrozenTrial]:
        """The trials in ``states`` (None: all), in number order, as of the last update."""
        # Optuna asks with tuples and lists of states (a Container, by its signature)
        key: StatesKey = None if states is None else frozenset(cast(Iterable[TrialState], states))
        kept = self.finished.get(key)
        if kept is None:
            assert key is not None
            kept = self.finished[key] = [t for t in self.finished[None] if t.state in key]
        out = list(kept)
        for trial in self.open.values():
            if key is None or trial.state in key:
                bisect.insort(out, trial, key=_number)
        return out


class IndexedReads(BaseStorage):
    """``get_all_trials`` through a :class:`TrialIndex` per study, for a storage that says
    how to read its trials (:meth:`_reading`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._indexes: dict[int, TrialIndex] = {}

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        """Optuna's answer: the study's trials in ``states``, in number order."""
        with self._reading(study_id) as (count, trial_at):
            index = self._indexes.setdefault(study_id, TrialIndex())
            index.update(count, trial_at)
            trials = index.trials(states)
        return copy.deepcopy(trials) if deepcopy else trials

    def delete_study(self, study_id: int) -> None:
        """The storage's, and the study's index with it."""
        self._indexes.pop(study_id, None)
        # the storage's own (this class comes before it in the storages below)
        super().delete_study(study_id)  # type: ignore[safe-super]

    def _reading(self, study_id: int) -> AbstractContextManager[tuple[int, TrialAt]]:
        """While held, the study's trials as they stand: how many, and how to read one."""
        raise NotImplementedError


class IndexedJournalStorage(IndexedReads, JournalStorage):
    """Optuna's journal storage whose ``get_all_trials`` reads a :class:`TrialIndex`."""

    @contextmanager
    def _reading(self, study_id: int) -> Iterator[tuple[int, TrialAt]]:
        with self._thread_lock:
            self._sync_with_backend()
            replay = self._replay_result
            ids = replay._study_id_to_trial_ids.get(study_id)
            if ids is None:
                raise KeyError(f"no study with id {study_id}")  # as Optuna's
            yield len(ids), lambda number: replay._trials[ids[number]]


class IndexedCachedStorage(IndexedReads, _CachedStorage):
    """Optuna's cache of a database storage, kept up to date by the driver's own writes.

    Optuna's cache asks the database for the new and the unfinished trials at every read
    (another process may have written them): with a database on the network, three reads
    per ask, each of six queries. A sweep's trials have one writer, its driver
    (:func:`~sweeper.sweep.study.sole_driver`), so after the study's first read this cache
    applies each of its writes to its copy of the trial as the database stores it (values
    through JSON, as Optuna reads them back; the times a state change gave a trial read back
    in one query) and answers reads without asking again. Every write still goes to the
    database first, in the same transactions as Optuna's: what a ``kill -9`` leaves there
    is what it would have left.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Studies read in full once, whose cached trials this process keeps up to date.
        self._loaded: set[int] = set()

    @contextmanager
    def _reading(self, study_id: int) -> Iterator[tuple[int, TrialAt]]:
        if study_id not in self._loaded:
            self._read_trials_from_remote_storage(study_id)  # every trial, the first time
            self._loaded.add(study_id)
        with self._lock:
            cached = self._studies[study_id].trials
            yield len(cached), cached.__getitem__

    def get_trial(self, trial_id: int) -> FrozenTrial:
        """The cached trial once its study was read (kept up to date), else Optuna's read."""
        with self._lock:
            found = self._trial_id_to_study_id_and_number.get(trial_id)
            if found is not None and found[0] in self._loaded:
                return self._studies[found[0]].trials[found[1]]
        return super().get_trial(trial_id)

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
    ) -> None:
        """Optuna's write, then the same on the cached trial."""
        super().set_trial_param(trial_id, param_name, param_value_internal, distribution)
        value = distribution.to_external_repr(param_value_internal)
        self._mirror(trial_id, _set_in("params", param_name, value))
        self._mirror(trial_id, _set_in("distributions", param_name, distribution))

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        """Optuna's write, then the same on the cached trial (the value as read back)."""
        super().set_trial_user_attr(trial_id, key, value)
        self._mirror(trial_id, _set_in("user_attrs", key, _as_stored(value)))

    def set_trial_system_attr(self, trial_id: int, key: str, value: JSONSerializable) -> None:
        """Optuna's write, then the same on the cached trial (the value as read back)."""
        super().set_trial_system_attr(trial_id, key, value)
        self._mirror(trial_id, _set_in("system_attrs", key, _as_stored(value)))

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        """Optuna's write, then the same on the cached trial."""
        super().set_trial_intermediate_value(trial_id, step, intermediate_value)
        self._mirror(trial_id, _set_in("intermediate_values", step, intermediate_value))

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        """Optuna's write, then the same on the cached trial, with the times the database
        gave it (read back in one query)."""
        changed = super().set_trial_state_values(trial_id, state, values)
        if not changed:
            return False
        from optuna.storages._rdb import models  # SQLAlchemy: not for every sweeper command
        from optuna.storages._rdb.storage import _create_scoped_session

        with _create_scoped_session(self._backend.scoped_session) as session:
            row = models.TrialModel.find_or_raise_by_id(trial_id, session)
            started, completed = row.datetime_start, row.datetime_complete
        stored = None if values is None else [_as_stored_value(v) for v in values]

        def change(trial: FrozenTrial) -> None:
            trial.state = state
            if stored is not None:
                trial.values = stored
            trial.datetime_start = started
            trial.datetime_complete = completed

        self._mirror(trial_id, change)
        return True

    def delete_study(self, study_id: int) -> None:
        """The storage's, and what this cache keeps of the study with it."""
        self._loaded.discard(study_id)
        super().delete_study(study_id)

    def _mirror(self, trial_id: int, change: Callable[[FrozenTrial], None]) -> None:
        """Apply ``change`` to a copy of the cached trial, which then takes its place."""
        with self._lock:
            found = self._trial_id_to_study_id_and_number.get(trial_id)
            if found is None or found[0] not in self._loaded:
                return  # not kept: Optuna's reads fetch it from the database
            trials = self._studies[found[0]].trials
            trial = copy.copy(trials[found[1]])
            change(trial)
            trials[found[1]] = trial


def _set_in(field: str, key: Any, value: Any) -> Callable[[FrozenTrial], None]:
    """A change that sets ``key`` in a trial's dictionary ``field`` (``params``, ...)."""

    def change(trial: FrozenTrial) -> None:
        setattr(trial, field, {**getattr(trial, field), key: value})

    return change


def _as_stored(value: Any) -> Any:
    """An attribute's value as the database gives it back (Optuna stores it as JSON)."""
    return json.loads(json.dumps(value))


def _as_stored_value(value: float) -> float:
    """An objective value as the database gives it back (infinities have a form of their own)."""
    from optuna.storages._rdb import models

    return models.TrialValueModel.stored_repr_to_value(
        *models.TrialValueModel.value_to_stored_repr(value)
    )
