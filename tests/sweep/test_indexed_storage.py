"""The driver's storages answer every read exactly as Optuna's own storages do.

Each test drives a study through the indexed storage the sweep's driver uses (trials
asked two at a time, enqueued, told complete, pruned with intermediate values, failed,
infeasible, with user and system attributes, finishing out of order) and, after every
step, compares what it reads with what a fresh Optuna storage reads from the same journal
file or database: the same trials, in the same order, for every set of states Optuna asks.
The database runs on SQLite and on the suite's PostgreSQL server.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from sweeper.store import Store
from sweeper.sweep.indexed_storage import IndexedCachedStorage, IndexedJournalStorage
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


def test_reads_match_optunas_storage_step_by_step(storages: Storages) -> None:
    driver, fresh = storages
    name = _name()
    study = optuna.create_study(
        study_name=name,
        storage=driver,
        sampler=SweepTPESampler(seed=1, constant_liar=True, multivariate=True),
    )
    reader = fresh()
    events = random.Random(3)
    in_flight: list[optuna.Trial] = []
    study.enqueue_trial({"x": 0.5, "n": 2})
    for number in range(40):
        trial = study.ask(SPACE)
        trial.set_user_attr("execution_id", f"e{number}")
        trial.set_user_attr("slot", (number % 2, "a"))  # read back as a list while it runs
        in_flight.append(trial)
        if len(in_flight) < 2:
            continue
        done = in_flight.pop(events.randrange(len(in_flight)))
        roll = events.random()
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
        _same_reads(driver, reader, name)
    _same_reads(driver, fresh(), name)  # a reader that never read before: everything at once


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
