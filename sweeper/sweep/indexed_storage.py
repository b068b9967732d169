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
one writer). Readers (``sweep status``, plots) keep Optuna's storages.

The driver's writes to a database are also fewer and lighter. Optuna spends a transaction
on each write, with ORM lookups of the trial before it, and counts the study's trials in
the database to number a new one (a count that grows with the study). Inside
:func:`grouped_writes` the trials' writes (parameters, attributes, a tell) wait and go to
the database in one transaction when the block ends, or earlier, just before any write that
cannot wait, such as an enqueued trial; they are plain inserts and updates of Optuna's
tables. A new trial is one insert, numbered by the count the cache holds, in the same
transaction as the writes held before it: with ``--seed`` a tell and the ask after it share
one. An ask's parameters and attributes are one more. The rows are Optuna's, as Optuna
writes them, and in their order, so what a ``kill -9`` leaves in the database is a state it
could have left before (a group lands whole or not at all): resume sees the same study.
The journal writes as it always did.
"""

from __future__ import annotations

import bisect
import copy
import json
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from typing import Any, cast

import optuna
from optuna._typing import JSONSerializable
from optuna.distributions import BaseDistribution, check_distribution_compatibility
from optuna.exceptions import UpdateFinishedTrialError
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
    through JSON, as Optuna reads them back) and answers reads without asking again. Every
    write goes to the database, in Optuna's transactions, or grouped (:meth:`grouped`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Studies read in full once, whose cached trials this process keeps up to date.
        self._loaded: set[int] = set()
        #: Inside :meth:`grouped`: the writes waiting for the group's transaction.
        self._waiting: list[Callable[[Any], None]] | None = None

    @contextmanager
    def grouped(self) -> Iterator[None]:
        """Hold the trials' writes made inside, then write them in one transaction.

        A write that cannot wait (a new trial, an intermediate value, a study's attribute)
        first writes those held before it, so the database sees every write in its order.
        Nested blocks belong to the outermost one. The held writes are written also when
        the block raises: each had been written at once before.
        """
        if self._waiting is not None:
            yield
            return
        self._waiting = []
        try:
            yield
        finally:
            try:
                self.write_waiting()
            finally:
                self._waiting = None  # also when the database refused the group

    def write_waiting(self) -> None:
        """Write the held writes in one transaction (none held: nothing)."""
        if self._waiting:
            self._transaction(None)

    def _transaction(self, last: Callable[[Any], Any] | None) -> Any:
        """The held writes, then ``last`` (its answer returned), in one transaction."""
        from optuna.storages._rdb.storage import _create_scoped_session

        writes = list(self._waiting or ())
        if self._waiting:
            self._waiting.clear()
        with _create_scoped_session(self._backend.scoped_session) as session:
            for write in writes:
                write(session)
            return None if last is None else last(session)

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
        kept = self._kept(trial_id)
        return kept if kept is not None else super().get_trial(trial_id)

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        """A new running trial, after the writes held before it (in the same transaction).

        Once the study is kept, the new trial's number is the count of trials the cache
        holds (the driver is the only writer) and the trial is one insert; Optuna's own
        locks the study's row and counts its trials in the database (a count that grows
        with the study). An enqueued trial (a template) is Optuna's.
        """
        with self._lock:
            number = len(self._studies[study_id].trials) if study_id in self._loaded else None
        if template_trial is not None or number is None or not _plain_writes(self._backend):
            self.write_waiting()
            return super().create_new_trial(study_id, template_trial)
        from optuna.storages._rdb import models
        from sqlalchemy import insert

        trials = models.TrialModel.__table__
        started = datetime.now()
        statement = (
            insert(trials)
            .values(
                study_id=study_id, number=number, state=TrialState.RUNNING, datetime_start=started
            )
            .returning(trials.c.trial_id)
        )
        trial_id = int(self._transaction(lambda session: session.execute(statement).scalar_one()))
        trial = FrozenTrial(
            number=number,
            state=TrialState.RUNNING,
            value=None,
            values=None,
            datetime_start=started,
            datetime_complete=None,
            params={},
            distributions={},
            user_attrs={},
            system_attrs={},
            intermediate_values={},
            trial_id=trial_id,
        )
        with self._lock:
            self._add_trials_to_cache(study_id, [trial])
        return trial_id

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
    ) -> None:
        """Optuna's write (held, in a group), then the same on the cached trial."""
        previous = self._held_distribution(trial_id, param_name)
        if previous is None:
            self.write_waiting()
            super().set_trial_param(trial_id, param_name, param_value_internal, distribution)
        else:
            check_distribution_compatibility(previous, distribution)
            self._hold(_param_write(trial_id, param_name, param_value_internal, distribution))
        value = distribution.to_external_repr(param_value_internal)
        self._mirror(trial_id, _set_in("params", param_name, value))
        self._mirror(trial_id, _set_in("distributions", param_name, distribution))

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        """Optuna's write (held, in a group), then the same on the cached trial."""
        self._set_attr(trial_id, "user_attrs", key, value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: JSONSerializable) -> None:
        """Optuna's write (held, in a group), then the same on the cached trial."""
        self._set_attr(trial_id, "system_attrs", key, value)

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        """Optuna's write, then the same on the cached trial."""
        self.write_waiting()
        super().set_trial_intermediate_value(trial_id, step, intermediate_value)
        self._mirror(trial_id, _set_in("intermediate_values", step, intermediate_value))

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        """Optuna's, after the writes held before it."""
        self.write_waiting()
        super().set_study_user_attr(study_id, key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: JSONSerializable) -> None:
        """Optuna's, after the writes held before it."""
        self.write_waiting()
        super().set_study_system_attr(study_id, key, value)

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        """Optuna's write (held, in a group), then the same on the cached trial, with the
        times the database gave it."""
        from optuna.storages._rdb import models  # SQLAlchemy: not for every sweeper command

        cached = self._held_trial(trial_id)
        if cached is None or not state.is_finished():
            self.write_waiting()
            changed = super().set_trial_state_values(trial_id, state, values)
            if not changed:
                return False
            from optuna.storages._rdb.storage import _create_scoped_session

            with _create_scoped_session(self._backend.scoped_session) as session:
                row = models.TrialModel.find_or_raise_by_id(trial_id, session)
                started, completed = row.datetime_start, row.datetime_complete
        else:
            self.check_trial_is_updatable(trial_id, cached.state)
            started, completed = cached.datetime_start, datetime.now()
            self._hold(_state_write(self, trial_id, state, values, completed))
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
        self.write_waiting()
        self._loaded.discard(study_id)
        super().delete_study(study_id)

    def _set_attr(self, trial_id: int, field: str, key: str, value: Any) -> None:
        """A user or system attribute: Optuna's write, or held, then the cached trial's."""
        cached = self._held_trial(trial_id)
        if cached is None:
            self.write_waiting()
            if field == "user_attrs":
                super().set_trial_user_attr(trial_id, key, value)
            else:
                super().set_trial_system_attr(trial_id, key, value)
        else:
            self.check_trial_is_updatable(trial_id, cached.state)
            self._hold(_attr_write(self._backend, field, trial_id, key, value))
        self._mirror(trial_id, _set_in(field, key, _as_stored(value)))

    def _held_trial(self, trial_id: int) -> FrozenTrial | None:
        """The cached trial when a write to it can be held (in a group, its study kept)."""
        if self._waiting is None or not _plain_writes(self._backend):
            return None
        return self._kept(trial_id)

    def _kept(self, trial_id: int) -> FrozenTrial | None:
        """The cached trial, when its study is kept up to date here (else None)."""
        with self._lock:
            found = self._trial_id_to_study_id_and_number.get(trial_id)
            if found is None or found[0] not in self._loaded:
                return None
            return self._studies[found[0]].trials[found[1]]

    def _study_of(self, trial_id: int) -> int:
        return self._trial_id_to_study_id_and_number[trial_id][0]

    def _held_distribution(self, trial_id: int, name: str) -> BaseDistribution | None:
        """The study's distribution of a parameter, when a write of it can be held.

        Optuna checks a parameter's distribution against the study's first; the first
        time a parameter is written, Optuna's own write does (and the cache keeps it).
        """
        cached = self._held_trial(trial_id)
        if cached is None:
            return None
        self.check_trial_is_updatable(trial_id, cached.state)
        with self._lock:
            return self._studies[self._study_of(trial_id)].param_distribution.get(name)

    def _hold(self, write: Callable[[Any], None]) -> None:
        assert self._waiting is not None
        self._waiting.append(write)

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


def grouped_writes(study: optuna.Study) -> AbstractContextManager[None]:
    """The study's trial writes made inside, in one database transaction (see the module)."""
    storage = study._storage
    if isinstance(storage, IndexedCachedStorage):
        return storage.grouped()
    return nullcontext()


def write_held(study: optuna.Study) -> None:
    """Write now what a group around this call holds (before a write elsewhere that must
    come after it, such as the store's)."""
    storage = study._storage
    if isinstance(storage, IndexedCachedStorage):
        storage.write_waiting()


def _plain_writes(backend: Any) -> bool:
    """Whether the group's statements suit the database: PostgreSQL and SQLite (an upsert
    in their dialect, the new row's id given back by the insert). Others get Optuna's."""
    return backend.engine.name in ("postgresql", "sqlite")


# A group's writes: SQLAlchemy Core statements on Optuna's tables (its schema, its JSON and
# value forms), without the ORM lookups of the trial that Optuna makes before each write
# (the cache knows the trial; the sweep's driver is the study's only writer).


def _param_write(
    trial_id: int, name: str, value_internal: float, distribution: BaseDistribution
) -> Callable[[Any], None]:
    """Optuna's ``set_trial_param`` (the distribution checked against the study's first)."""
    from optuna.distributions import distribution_to_json
    from optuna.storages._rdb import models
    from sqlalchemy import insert

    statement = insert(models.TrialParamModel.__table__).values(
        trial_id=trial_id,
        param_name=name,
        param_value=value_internal,
        distribution_json=distribution_to_json(distribution),
    )
    return lambda session: session.execute(statement)


def _attr_write(
    backend: Any, field: str, trial_id: int, key: str, value: Any
) -> Callable[[Any], None]:
    """Optuna's ``set_trial_user_attr`` / ``set_trial_system_attr`` (``field``: ``user_attrs``
    or ``system_attrs``): an upsert of the JSON."""
    from optuna.storages._rdb import models
    from sqlalchemy.dialects import postgresql, sqlite

    value_json = json.dumps(value)  # not JSON: the error at the call, as Optuna's
    model = models.TrialUserAttributeModel
    if field == "system_attrs":
        model = models.TrialSystemAttributeModel
    table = model.__table__

    # SQLite otherwise: writes are held on these two only (_plain_writes)
    insert: Any = postgresql.insert if backend.engine.name == "postgresql" else sqlite.insert
    statement = insert(table).values(trial_id=trial_id, key=key, value_json=value_json)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.trial_id, table.c.key],
        set_={"value_json": statement.excluded.value_json},
    )
    return lambda session: session.execute(statement)


def _state_write(
    storage: BaseStorage,
    trial_id: int,
    state: TrialState,
    values: Sequence[float] | None,
    completed: datetime,
) -> Callable[[Any], None]:
    """Optuna's ``set_trial_state_values`` to a finished state: the values, then the state
    and the time, on a trial that is not finished in the database (else Optuna's error).

    ``completed``: the time the tell was made (the cached trial gets the same).
    """
    from optuna.storages._rdb import models
    from sqlalchemy import insert, update

    rows = []
    for objective, v in enumerate(values or ()):
        stored, kind = models.TrialValueModel.value_to_stored_repr(v)
        rows.append(
            {"trial_id": trial_id, "objective": objective, "value": stored, "value_type": kind}
        )
    trials = models.TrialModel.__table__
    change = (
        update(trials)
        .where(trials.c.trial_id == trial_id)
        .where(trials.c.state.in_([TrialState.RUNNING, TrialState.WAITING]))
        .values(state=state, datetime_complete=completed)
    )

    def write(session: Any) -> None:
        if rows:
            session.execute(insert(models.TrialValueModel.__table__), rows)
        if session.execute(change).rowcount != 1:  # finished in the database: Optuna's error
            number = storage.get_trial(trial_id).number
            raise UpdateFinishedTrialError(
                f"Trial#{number} has already finished and can not be updated."
            )

    return write


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
