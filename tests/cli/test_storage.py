"""Where a sweep keeps its study and its executions, through the real ``sweep`` command.

`--storage sqlite:///...` and `--storage postgresql://...` (a real PostgreSQL server, which
`bash scripts/test` installs and starts and names in SWEEPER_TEST_POSTGRES_URL), `kill -9` of
the driver with the study in PostgreSQL then `sweep resume`, and `--store s3://...` against a
real (moto) S3 server on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import optuna
import pytest

from sweeper.store import Store
from tests.conftest import sweep_cli
from tests.faults.conftest import TINY_PY, TINY_STEP, kill_group, records, sweep_popen, wait_for
from tests.store import conftest as store_fixtures

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# the real moto S3 server of the store tests
s3_endpoint = store_fixtures.s3_endpoint
s3_uri = store_fixtures.s3_uri

NO_POSTGRES = (
    "no PostgreSQL server for the --storage postgresql:// tests: run `bash scripts/test` "
    "(as root it installs Debian's postgresql, starts it on 127.0.0.1 and sets "
    "SWEEPER_TEST_POSTGRES_URL), or set SWEEPER_TEST_POSTGRES_URL=postgresql://USER:PASSWORD@HOST:PORT/DB"
)


@pytest.fixture(scope="module")
def postgres_url() -> str:
    """The test server's URL; its absence fails the test (it is part of the suite's setup)."""
    url = os.environ.get("SWEEPER_TEST_POSTGRES_URL")
    if not url:
        pytest.fail(NO_POSTGRES)
    import sqlalchemy

    # the way Optuna's RDB storage connects: the same driver, the same URL
    engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 10})
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
    except Exception as exc:
        pytest.fail(f"{NO_POSTGRES}\n{url}: {type(exc).__name__}: {exc}")
    finally:
        engine.dispose()
    return url


@pytest.fixture
def tiny(make_project: Any) -> Path:
    return make_project(TINY_STEP, {"tiny.py": TINY_PY})


def _sweep(project: Path, trials: int, *extra: str) -> list[str]:
    return [
        "tiny", "--trials", str(trials), "--parallel", "2", "--metric", "loss",
        "--runtime", "local", "--seed", "3", "-p", "x=0..1", "--json",
        "-f", str(project / "valohai.yaml"), *extra,
    ]  # fmt: skip


def _complete_rows(store: Store, sweep_id: str) -> list[dict[str, Any]]:
    rows = store.read_dataset("executions").to_pylist()
    return [r for r in rows if r["sweep_id"] == sweep_id and r["status"] == "complete"]


def _study_in(url: str, sweep_id: str) -> optuna.Study:
    return optuna.load_study(study_name=sweep_id, storage=url)


def _check_storage(project: Path, url: str, ray_head: str) -> None:
    """A 3-trial sweep keeps its study in ``url``, and status reads it back from there."""
    proc = sweep_cli(*_sweep(project, 3, "--storage", url, "--address", ray_head), cwd=project)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    sweep_id = summary["sweep_id"]
    assert summary["trials"]["complete"] == 3
    # the study is in the database, with each trial's execution, and not in a journal file
    study = _study_in(url, sweep_id)
    trials = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    rows = {
        r["execution_id"]: r for r in _complete_rows(Store.open(project / ".sweeper"), sweep_id)
    }
    assert len(trials) == 3 and len(rows) == 3
    assert {t.user_attrs["execution_id"] for t in trials} == set(rows)
    for trial in trials:
        assert trial.values == [rows[trial.user_attrs["execution_id"]]["metric.loss"]]
    assert not list((project / ".sweeper").glob("sweeps/*/optuna.journal"))
    status = json.loads(sweep_cli("status", sweep_id, "--json", cwd=project, check=True).stdout)
    assert status["trials"]["complete"] == 3 and status["status"] == "complete"
    assert status["best"]["value"] == study.best_value


def test_sqlite_storage_holds_the_study(tiny: Path, tmp_path: Path, ray_head: str) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    _check_storage(tiny, url, ray_head)
    assert (tmp_path / "studies.db").stat().st_size > 0


def test_postgresql_storage_holds_the_study(tiny: Path, postgres_url: str, ray_head: str) -> None:
    _check_storage(tiny, postgres_url, ray_head)


def test_kill_9_with_the_study_in_postgresql_then_resume_ends_at_exactly_n(
    tiny: Path, postgres_url: str, ray_head: str
) -> None:
    trials = 5
    store_dir = tiny / ".sweeper"
    args = _sweep(tiny, trials, "--storage", postgres_url, "--address", ray_head)
    driver = sweep_popen(*args, "-p", "sleep=0.6")
    # kill -9 once two executions have finished (their final records: actors write the
    # dataset rows in batches) and the others are not all done
    wait_for(
        lambda: (
            sum(r["status"] == "complete" for r in records(store_dir)) >= 2
            or driver.poll() is not None
        ),
        timeout=180,
    )
    assert driver.poll() is None, driver.communicate()[1]
    kill_group(driver)
    (sweep_id,) = [p.parent.name for p in store_dir.glob("sweeps/*/sweep.json")]
    finished = [r for r in records(store_dir) if r["status"] == "complete"]
    assert 2 <= len(finished) < trials, "the kill must land mid-sweep"
    assert len(_study_in(postgres_url, sweep_id).get_trials()) < trials + 2

    resumed = sweep_cli("resume", sweep_id, "--json", "--address", ray_head, cwd=tiny, timeout=240)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["trials"]["complete"] == trials
    assert summary["trials"]["error"] == 0 and summary["trials"]["running"] == 0
    study = _study_in(postgres_url, sweep_id)
    complete = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    assert len(complete) == trials
    assert not [t for t in study.get_trials() if t.state == optuna.trial.TrialState.RUNNING]
    rows = _complete_rows(Store.open(store_dir), sweep_id)
    assert len(rows) == trials
    assert len({r["trial_number"] for r in rows}) == trials, "a trial finished twice"
    assert {t.user_attrs["execution_id"] for t in complete} == {r["execution_id"] for r in rows}


def test_s3_store_end_to_end(tiny: Path, s3_uri: str, tmp_path: Path) -> None:
    # with --storage the study goes to that database (here SQLite), not to the store
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    proc = sweep_cli(
        *_sweep(tiny, 2, "--store", s3_uri, "--storage", storage), cwd=tiny, timeout=280
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["trials"]["complete"] == 2
    assert not (tiny / ".sweeper").exists(), "an s3:// sweep wrote a local store"

    listed = json.loads(
        sweep_cli("ls", "--store", s3_uri, "--format", "json", cwd=tiny, check=True).stdout
    )
    mine = [r for r in listed if r["sweep_id"] == summary["sweep_id"]]
    assert len(mine) == 2 and {r["status"] for r in mine} == {"complete"}
    best = summary["best"]
    shown = json.loads(
        sweep_cli(
            "show", best["execution_id"], "--store", s3_uri, "--json", cwd=tiny, check=True
        ).stdout
    )
    assert shown["sweep_id"] == summary["sweep_id"]
    assert shown["metrics"]["loss"] == best["value"]
    assert [o["path"] for o in shown["outputs"]] == ["out.txt"]
    text = sweep_cli("show", best["execution_id"], "--store", s3_uri, cwd=tiny, check=True).stdout
    assert best["execution_id"] in text
    logs = sweep_cli("logs", best["execution_id"], "--store", s3_uri, cwd=tiny, check=True).stdout
    assert logs.splitlines() == [
        json.dumps({"loss": best["value"], "x": shown["parameters"]["x"]})
    ], logs
    out_dir = tmp_path / "out"
    sweep_cli(
        "outputs", best["execution_id"], "--store", s3_uri, "-d", str(out_dir), cwd=tiny, check=True
    )
    assert float((out_dir / "out.txt").read_text()) == shown["parameters"]["x"]
    status = json.loads(
        sweep_cli(
            "status", summary["sweep_id"], "--store", s3_uri, "--json", cwd=tiny, check=True
        ).stdout
    )
    assert status["trials"]["complete"] == 2 and status["status"] == "complete"
