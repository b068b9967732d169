"""The driver's storages answer every read exactly as Optuna's own storages do.

Each test drives a study through the indexed storage the sweep's driver uses (trials
asked two at a time, enqueued, told complete, pruned with intermediate values, failed,
infeasible, with user and system attributes, finishing out of order) and, after every
step, compares what it reads with what a fresh Optuna storage reads from the same journal
file or database: the same trials, in the same order, for every set of states Optuna asks.
The database runs on SQLite and on the suite's PostgreSQL server.
"""

from __future__ import annotations

import contextlib
import os
import random
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from sweeper.store import Store
from sweeper.sweep.indexed_storage import (
    IndexedCachedStorage,
    IndexedJournalStorage,
    grouped_writes,
)
from sweeper.sweep.study import study_storage
from sweeper.sweep.tpe import SweepTPESampler

SPACE = {"x": FloatDistribution(0.0, 1.0), "n": IntDistribution(1, 5)}
ASKED_STATES: list[tuple[TrialState, ...] | None] = [
    None,
    (TrialState.WAITING,),
    (TrialState.COMPLETE, TrialState.PRUNED),
    (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING),
    (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL),
]

#: (the driver's storage, a fresh Optuna storage reading the same study)
Storages = tuple[optuna.storages.BaseStorage, Callable[[], optuna.storages.BaseStorage]]


@pytest.fixture(params=["journal", "sqlite", "postgresql"])
def storages(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storages]:
    if request.param == "journal":
        path = str(tmp_path / "study.journal")
        yield (
            IndexedJournalStorage(JournalFileBackend(path)),
            lambda: JournalStorage(JournalFileBackend(path)),
        )
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'study.db'}"
    else:
        url = os.environ.get("SWEEPER_TEST_POSTGRES_URL", "")
        if not url:
            pytest.fail(
                "no PostgreSQL server: run `bash scripts/test` or set SWEEPER_TEST_POSTGRES_URL"
            )
    driver = IndexedCachedStorage(RDBStorage(url))
    readers: list[RDBStorage] = []

    def reader() -> optuna.storages.BaseStorage:
        readers.append(RDBStorage(url, skip_compatibility_check=True))
        return readers[-1]

    yield driver, reader
    driver._backend.engine.dispose()
    for storage in readers:
        storage.engine.dispose()


def _same_reads(
    driver: optuna.storages.BaseStorage, fresh: optuna.storages.BaseStorage, name: str
) -> None:
    """Every read Optuna makes gives the same trials through both storages."""
    study_id = fresh.get_study_id_from_name(name)
    for states in ASKED_STATES:
        got = driver.get_all_trials(study_id, deepcopy=False, states=states)
        assert _facts(got) == _facts(fresh.get_all_trials(study_id, states=states)), states
    for trial in fresh.get_all_trials(study_id):
        assert _facts([driver.get_trial(trial._trial_id)]) == _facts([trial])


def _facts(trials: list[optuna.trial.FrozenTrial]) -> str:
    """Every field of the trials, in order (a NaN equal to a NaN, a tuple unlike a list;
    attributes sorted by name: the database gives them back in an order of its own)."""
    return repr(
        [
            sorted((k, sorted(v.items()) if isinstance(v, dict) else v) for k, v in vars(t).items())
            for t in trials
        ]
    )


def _name() -> str:
    """A study name of its own (the PostgreSQL database outlives the test)."""
    return f"indexed-{uuid.uuid4().hex[:12]}"


@pytest.mark.parametrize("grouped", [False, True], ids=["each-write", "grouped"])
def test_reads_match_optunas_storage_step_by_step(storages: Storages, grouped: bool) -> None:
    """``grouped``: each ask and each tell with its attributes in one group, as the driver
    makes them (a database study writes a group in one transaction)."""
    driver, fresh = storages
    name = _name()
    study = optuna.create_study(
        study_name=name,
        storage=driver,
        sampler=SweepTPESampler(seed=1, constant_liar=True, multivariate=True),
    )
    group = (lambda: grouped_writes(study)) if grouped else contextlib.nullcontext
    reader = fresh()
    events = random.Random(3)
    in_flight: list[optuna.Trial] = []
    study.enqueue_trial({"x": 0.5, "n": 2})
    for number in range(40):
        with group():
            trial = study.ask(SPACE)
            trial.set_user_attr("execution_id", f"e{number}")
            trial.set_user_attr("slot", (number % 2, "a"))  # read back as a list while it runs
        in_flight.append(trial)
        if len(in_flight) < 2:
            continue
        done = in_flight.pop(events.randrange(len(in_flight)))
        with group():
            _end(study, done, events.random())
        _same_reads(driver, reader, name)
    _same_reads(driver, fresh(), name)  # a reader that never read before: everything at once


def _end(study: optuna.Study, done: optuna.Trial, roll: float) -> None:
    """Tell one of the ways a trial ends, chosen by ``roll``."""
    if roll < 0.1:
        study.tell(done, float("inf"))  # stored in a form of its own
    elif roll < 0.6:
        study.tell(done, done.params["x"] ** 2)
    elif roll < 0.75:
        done.report(0.3, 0)
        done.report(float("nan"), 1)
        study.tell(done, state=TrialState.PRUNED)
    elif roll < 0.85:
        done.set_constraint("resources", 1.0)
        done.set_user_attr("outcome", "error")
        study.tell(done, state=TrialState.PRUNED)
    else:
        study.tell(done, state=TrialState.FAIL)
        study.enqueue_trial(done.params, user_attrs={"retry_of": done.number})


def test_a_resumed_driver_reads_what_the_killed_one_left(storages: Storages) -> None:
    driver, fresh = storages
    name = _name()
    study = optuna.create_study(study_name=name, storage=driver)
    left = [study.ask(SPACE) for _ in range(3)]
    study.tell(left[1], 0.1)
    # a new driver on the same study (the first was killed with two trials running)
    resumed = optuna.load_study(study_name=name, storage=type(driver)(*_inner(driver)))
    running = resumed.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    assert [t.number for t in running] == [0, 2]
    resumed.tell(running[0].number, 0.5)
    _same_reads(resumed._storage, fresh(), name)


def _inner(driver: optuna.storages.BaseStorage) -> tuple[Any, ...]:
    """What a new driver's storage of the same study is built from."""
    if isinstance(driver, IndexedCachedStorage):
        return (RDBStorage(driver._backend.url),)
    assert isinstance(driver, IndexedJournalStorage)
    return (JournalFileBackend(driver._backend._file_path),)


def test_the_sweeps_driver_uses_the_indexed_storages(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store", create=True)
    journal = study_storage(store, "s1", None, writer=True)
    assert isinstance(journal, IndexedJournalStorage)
    database = study_storage(store, "s1", f"sqlite:///{tmp_path / 'db'}", writer=True)
    assert isinstance(database, IndexedCachedStorage)
    # readers (status, plots) keep Optuna's own
    assert study_storage(store, "s1", "sqlite:///x.db") == "sqlite:///x.db"
    assert type(study_storage(store, "s1", None)) is JournalStorage


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storages]:
    """The driver's storage of a database and fresh readers of it."""
    yield from storages.__wrapped__(request, tmp_path)  # type: ignore[attr-defined]


def test_a_group_lands_in_one_transaction_in_the_order_written(database: Storages) -> None:
    """Until the group ends, another process sees none of its writes; a new trial asked
    inside first writes those held before it; then every write is there."""
    driver, fresh = database
    name = _name()
    study = optuna.create_study(study_name=name, storage=driver)
    study.ask(SPACE)  # the study is read once: its trials are kept from here on
    reader = fresh()
    study_id = reader.get_study_id_from_name(name)
    with grouped_writes(study):
        first = study.ask(SPACE)
        first.set_user_attr("execution_id", "e1")
        seen = reader.get_all_trials(study_id)[first.number]
        assert (seen.params, seen.user_attrs) == ({}, {})  # held
        study.tell(first, 0.5)
        assert reader.get_all_trials(study_id)[first.number].state is TrialState.RUNNING
        second = study.ask(SPACE)  # a new trial: what was held goes first, in its transaction
        landed = reader.get_all_trials(study_id)[first.number]
        assert landed.state is TrialState.COMPLETE and landed.user_attrs == {"execution_id": "e1"}
        assert reader.get_all_trials(study_id)[second.number].params == {}  # held
        study.enqueue_trial({"x": 0.1}, user_attrs={"retry_of": first.number})  # Optuna's
        assert reader.get_all_trials(study_id)[second.number].params == second.params
        second.set_user_attr("execution_id", "e2")
        assert reader.get_all_trials(study_id)[second.number].user_attrs == {}
    assert reader.get_all_trials(study_id)[second.number].user_attrs == {"execution_id": "e2"}
    _same_reads(driver, fresh(), name)


def test_a_group_refuses_what_optuna_refuses(database: Storages) -> None:
    """A finished trial cannot change, nor a parameter its distribution, inside a group."""
    driver, _ = database
    study = optuna.create_study(study_name=_name(), storage=driver)
    done = study.ask(SPACE)
    study.tell(done, 1.0)
    with grouped_writes(study):
        with pytest.raises(optuna.exceptions.UpdateFinishedTrialError, match="already finished"):
            driver.set_trial_user_attr(done._trial_id, "late", 1)
        with pytest.raises(ValueError, match="different distribution kind"):
            study.ask().suggest_int("x", 0, 3)  # a float in the study's first trial
        with pytest.raises(optuna.exceptions.UpdateFinishedTrialError, match="already finished"):
            driver.set_trial_state_values(done._trial_id, TrialState.COMPLETE, [2.0])


def test_a_new_trial_is_written_after_the_writes_held_before_it(database: Storages) -> None:
    """When the writes held before a new trial cannot be written, neither is the trial: the
    database never holds an ask without the tell the driver made before it."""
    driver, fresh = database
    name = _name()
    study = optuna.create_study(study_name=name, storage=driver)
    first = study.ask(SPACE)
    with pytest.raises(sqlalchemy.exc.IntegrityError, match="(?i)unique"):
        with grouped_writes(study):
            # held: a second value of a parameter the database has (it refuses it)
            driver.set_trial_param(first._trial_id, "x", 0.25, SPACE["x"])
            study.tell(first, 0.5)
            study.ask(SPACE)
    (stored,) = fresh().get_all_trials(fresh().get_study_id_from_name(name))
    assert (stored.state, stored.params) == (TrialState.RUNNING, first.params)


def test_a_group_the_database_refuses_raises_and_the_next_writes_land(database: Storages) -> None:
    """A trial another process finished refuses the group's tell with Optuna's error; the
    driver's writes after it go to the database again."""
    driver, fresh = database
    name = _name()
    study = optuna.create_study(study_name=name, storage=driver)
    trial = study.ask(SPACE)
    fresh().set_trial_state_values(trial._trial_id, TrialState.FAIL)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError, match="already finished"):
        with grouped_writes(study):
            study.tell(trial, 1.0)
    later = study.ask(SPACE)
    with grouped_writes(study):
        later.set_user_attr("execution_id", "e2")
    stored = fresh().get_all_trials(fresh().get_study_id_from_name(name))
    assert [t.user_attrs for t in stored] == [{}, {"execution_id": "e2"}]
