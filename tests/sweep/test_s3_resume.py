"""`kill -9` of a sweep driver whose store is a real (moto) S3 server and that has no
`--storage`, then `sweep resume`: exactly `--trials` trials, none run twice.

The study is a journal the driver copies to the store now and then (sweeper/sweep/
remote_study.py); the copy can be behind the execution records, and without it at all
the records alone rebuild the study.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest

from sweeper.errors import StoreError
from sweeper.store import Store
from tests.conftest import ray_head_cluster, sweep_cli
from tests.faults.conftest import TINY_PY, TINY_STEP, kill_group, sweep_popen, wait_for
from tests.store import conftest as store_fixtures

pytestmark = [pytest.mark.ray, pytest.mark.slow]

s3_endpoint = store_fixtures.s3_endpoint
s3_uri = store_fixtures.s3_uri

TRIALS = 6


@pytest.fixture(scope="module")
def s3_ray_head(s3_endpoint: str) -> Iterator[str]:
    """A Ray head started once the S3 credentials are in the environment its workers inherit."""
    with ray_head_cluster(4) as address:
        yield address


def _store(uri: str) -> Store | None:
    try:
        return Store.open(uri)
    except StoreError:
        return None  # the driver has not made it yet


def _finished(uri: str) -> int:
    store = _store(uri)
    if store is None or store.latest_sweep() is None:
        return 0
    return _complete_records(store)


def _complete_records(store: Store) -> int:
    """Complete executions by their records (actors write dataset rows in batches)."""
    records = (store.get_record(i) for i in store.execution_ids())
    return sum(1 for r in records if r is not None and r.status == "complete")


def _complete_rows(store: Store) -> list[dict[str, Any]]:
    return [r for r in store.read_dataset("executions").to_pylist() if r["status"] == "complete"]


@pytest.mark.parametrize("copy", ["as the driver left it", "lost"])
def test_kill_9_with_an_s3_store_then_resume_ends_at_exactly_n(
    copy: str, make_project: Any, s3_uri: str, s3_ray_head: str, tmp_path: Path
) -> None:
    project = make_project(TINY_STEP, {"tiny.py": TINY_PY})
    args = [
        "tiny", "--trials", str(TRIALS), "--parallel", "2", "--metric", "loss",
        "--runtime", "local", "--seed", "3", "-p", "x=0..1", "-p", "sleep=0.8", "--json",
        "--store", s3_uri, "--address", s3_ray_head, "-f", str(project / "valohai.yaml"),
    ]  # fmt: skip
    driver = sweep_popen(*args, cwd=project)
    wait_for(lambda: _finished(s3_uri) >= 2 or driver.poll() is not None, 240, 0.5)
    assert driver.poll() is None, driver.communicate()[1]
    kill_group(driver)

    store = Store.open(s3_uri)
    sweep_id = store.latest_sweep()
    assert sweep_id is not None
    assert 2 <= _complete_records(store) < TRIALS, "the kill must land mid-sweep"
    assert not (project / ".sweeper").exists(), "an s3:// sweep wrote a local store"
    if copy == "lost":
        store.backend.delete(f"sweeps/{sweep_id}/optuna.journal")
        assert not store.fetch_sweep_journal(sweep_id, tmp_path / "none.journal")

    resumed = sweep_cli(
        "resume", sweep_id, "--json", "--store", s3_uri, "--address", s3_ray_head,
        cwd=project, timeout=280,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["trials"]["complete"] == TRIALS
    assert summary["trials"]["error"] == 0 and summary["trials"]["running"] == 0

    # the records: exactly TRIALS complete executions, one per trial number
    rows = _complete_rows(Store.open(s3_uri))
    assert len(rows) == TRIALS
    assert len({r["trial_number"] for r in rows}) == TRIALS, "a trial finished twice"

    # the study in the store says the same, and `sweep status` reads it from there
    journal = tmp_path / "optuna.journal"
    assert Store.open(s3_uri).fetch_sweep_journal(sweep_id, journal)
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))
    )
    study = optuna.load_study(study_name=sweep_id, storage=storage)
    complete = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    assert {t.user_attrs["execution_id"] for t in complete} == {r["execution_id"] for r in rows}
    for trial in complete:
        row = next(r for r in rows if r["execution_id"] == trial.user_attrs["execution_id"])
        assert trial.values == [row["metric.loss"]]
        assert trial.params["x"] == row["param.x"]
    status = json.loads(
        sweep_cli("status", sweep_id, "--store", s3_uri, "--json", cwd=project, check=True).stdout
    )
    assert status["status"] == "complete" and status["trials"]["complete"] == TRIALS
