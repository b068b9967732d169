"""What docs/cluster.md recommends, run on the test bed whose nodes share nothing.

Two worker nodes and a head, each with its own HOME, TMPDIR and Ray temp dir, none able to
read another's files, token authentication on (tests/cluster/nodisk.py proves it before the
first test). On it: an ``s3://`` store (a real moto server) with the study in PostgreSQL
across both workers, through ``kill -9`` of the driver and ``sweep resume``; and ``sweep
submit`` + ``sweep jobs pull`` of a sweep whose trials run in Docker on the workers, every
container checked to mount only its own worker's folders.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import pytest

from sweeper.errors import StoreError
from sweeper.store import Store
from tests.cli import test_storage as storage_tests
from tests.cluster.nodisk import NoDiskCluster, no_disk_cluster
from tests.conftest import sweep_cli
from tests.faults.conftest import TINY_PY, TINY_STEP, kill_group, sweep_popen, wait_for
from tests.store import conftest as store_fixtures

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(1200)]

# the real moto S3 server of the store tests, and the suite's PostgreSQL server
s3_endpoint = store_fixtures.s3_endpoint
s3_uri = store_fixtures.s3_uri
postgres_url = storage_tests.postgres_url

TRIALS = 8


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> Iterator[NoDiskCluster]:
    """Two worker nodes and a head with its job server; S3 credentials in every node's env."""
    with no_disk_cluster(tmp_path_factory.getbasetemp(), dashboard=True) as cluster:
        yield cluster


def test_a_driver_without_the_heads_token_is_refused(bed: NoDiskCluster, tmp_path: Path) -> None:
    # a HOME without ~/.ray/auth_token: a machine the admin never gave the token
    project = tmp_path / "project"
    project.mkdir()
    (project / "valohai.yaml").write_text(TINY_STEP)
    (project / "tiny.py").write_text(TINY_PY)
    (tmp_path / "home").mkdir()
    env = {**bed.driver_env, "HOME": str(tmp_path / "home")}
    proc = sweep_cli("run", "tiny", "--address", bed.address, cwd=project, env=env, timeout=240)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("sweep: error:")]
    assert len(errors) == 1, proc.stderr
    assert f"could not reach the Ray cluster at {bed.address}" in errors[0]
    assert "RAY_AUTH_MODE=token" in errors[0]


def _complete_records(uri: str) -> dict[str, Any]:
    """The complete executions of an S3 store by their records (rows are written in batches)."""
    try:
        store = Store.open(uri)
    except StoreError:
        return {}  # the driver has not made it yet
    records = (store.get_record(i) for i in store.execution_ids())
    return {r.id: r for r in records if r is not None and r.status == "complete"}


def test_an_s3_store_with_the_study_in_postgresql_survives_kill_9_of_the_driver(
    bed: NoDiskCluster, make_project: Any, s3_uri: str, postgres_url: str, tmp_path: Path
) -> None:
    project = make_project(TINY_STEP, {"tiny.py": TINY_PY})
    args = [
        "tiny", "--trials", str(TRIALS), "--parallel", "4", "--metric", "loss",
        "--runtime", "local", "--seed", "5", "-p", "x=0..1", "-p", "sleep=1.5", "--json",
        "--store", s3_uri, "--storage", postgres_url, "--address", bed.address,
    ]  # fmt: skip
    driver = sweep_popen(*args, cwd=project, **bed.driver_env)
    try:
        wait_for(lambda: len(_complete_records(s3_uri)) >= 3 or driver.poll() is not None, 300, 0.5)
        assert driver.poll() is None, driver.communicate()[1]
    finally:
        kill_group(driver)
    finished = _complete_records(s3_uri)
    assert 3 <= len(finished) < TRIALS, "the kill must land mid-sweep"
    sweep_id = Store.open(s3_uri).latest_sweep()
    assert sweep_id is not None

    resumed = sweep_cli(
        "resume", sweep_id, "--json", "--store", s3_uri, "--address", bed.address,
        cwd=project, env=bed.driver_env, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert "damaged" not in resumed.stderr, "kill -9 left a part that cannot be read"
    summary = json.loads(resumed.stdout)
    assert summary["trials"]["complete"] == TRIALS
    assert summary["trials"]["error"] == 0 and summary["trials"]["running"] == 0
    assert not (project / ".sweeper").exists(), "an s3:// sweep wrote a local store"

    store = Store.open(s3_uri)
    rows = {
        r["execution_id"]: r
        for r in store.read_dataset("executions").to_pylist()
        if r["sweep_id"] == sweep_id and r["status"] == "complete"
    }
    assert len(rows) == TRIALS
    assert len({r["trial_number"] for r in rows.values()}) == TRIALS, "a trial finished twice"
    # what had finished before the kill is kept as it was
    for eid, record in finished.items():
        assert (rows[eid]["metric.loss"], rows[eid]["ended_at"]) == (
            record.metrics["loss"],
            datetime.fromisoformat(str(record.ended_at)),
        )
    # both workers ran trials; each one's output and log reached the store through S3
    assert {r["ray_node"] for r in rows.values()} == bed.worker_node_ids()
    for row in rows.values():
        assert store.read_log(row["execution_id"]).strip().startswith('{"loss"'), row
    best = summary["best"]["execution_id"]
    out = tmp_path / "out"
    sweep_cli("outputs", best, "--store", s3_uri, "-d", str(out), cwd=project, check=True)
    assert float((out / "out.txt").read_text()) == rows[best]["param.x"]

    # the study in PostgreSQL says the same: one complete trial per execution, none running
    study = optuna.load_study(study_name=sweep_id, storage=postgres_url)
    complete = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    assert not [t for t in study.get_trials() if t.state == optuna.trial.TrialState.RUNNING]
    assert {t.user_attrs["execution_id"] for t in complete} == set(rows)
    for trial in complete:
        row = rows[trial.user_attrs["execution_id"]]
        assert (trial.values, trial.params["x"]) == ([row["metric.loss"]], row["param.x"])
    status = json.loads(
        sweep_cli("status", sweep_id, "--store", s3_uri, "--json", cwd=project, check=True).stdout
    )
    assert status["status"] == "complete" and status["trials"]["complete"] == TRIALS
    assert status["best"]["value"] == study.best_value


#: A Docker step that ends only once the test has inspected its container (the gate file
#: appears in its work folder); a stdlib-only script, so the test image runs it as is.
GATED_DOCKER_STEP = """
- step:
    name: gated
    image: sweeper-test/python:latest
    command: python3 ./gated.py {parameters}
    parameters:
      - name: x
        type: float
        min: 0
        max: 1
"""

GATE = "nodisk-gate"

GATED_PY = f"""
import argparse, json, os, time
p = argparse.ArgumentParser()
p.add_argument("--x", type=float)
a = p.parse_args()
deadline = time.monotonic() + 600
while not os.path.exists("/valohai/{GATE}"):
    if time.monotonic() > deadline:
        raise SystemExit("the test never inspected this container")
    time.sleep(0.05)
with open(os.path.join(os.environ["VH_OUTPUTS_DIR"], "out.txt"), "w") as handle:
    handle.write(repr(a.x))
print(json.dumps({{"loss": (a.x - 0.3) ** 2}}), flush=True)
"""


def _job(bed: NoDiskCluster, job_id: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{bed.dashboard_url}/api/jobs/{job_id}", headers={"Authorization": f"Bearer {bed.token}"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        job: dict[str, Any] = json.loads(response.read())
    return job


@pytest.mark.docker
def test_submit_and_pull_of_docker_trials_that_mount_only_their_workers_folders(
    bed: NoDiskCluster, make_project: Any
) -> None:
    project = make_project(GATED_DOCKER_STEP, {"gated.py": GATED_PY})
    with bed.watch_docker(gate=GATE) as watch:
        proc = sweep_cli(
            "submit", "--address", bed.dashboard_url, "--follow", "--",
            "gated", "--trials", "4", "--parallel", "4", "--metric", "loss", "--seed", "7",
            "--runtime", "docker", "--pull", "never", "--json",
            cwd=project, env=bed.driver_env, timeout=400,
        )  # fmt: skip
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    job_id = proc.stdout.splitlines()[0]
    assert job_id.startswith("raysubmit_"), proc.stdout
    summary = json.loads(next(line for line in reversed(proc.stdout.splitlines()) if "{" in line))
    assert summary["trials"]["complete"] == 4
    # the job's driver ran on the head, and kept its store in the head's HOME
    assert _job(bed, job_id)["driver_node_id"] == bed.head_node_id
    head_store = Store.open(bed.head_area / "home" / ".sweeper" / "jobs" / job_id / "store")
    assert len(head_store.read_dataset("executions").to_pylist()) == 4
    assert f"pulled job {job_id}" in proc.stderr and "4 new executions" in proc.stderr

    # --follow pulled it all into the project's store, on the driver's disk
    store = Store.open(project / ".sweeper")
    rows = [
        r
        for r in store.read_dataset("executions").to_pylist()
        if r["sweep_id"] == summary["sweep_id"]
    ]
    assert sorted(r["status"] for r in rows) == ["complete"] * 4
    assert {r["ray_node"] for r in rows} == bed.worker_node_ids()
    assert {r["image"] for r in rows} == {"sweeper-test/python:latest"}
    watch.assert_private(bed, rows)
    artifacts = store.read_dataset("artifacts").to_pylist()
    for row in rows:
        eid = row["execution_id"]
        assert (store.read_log(eid) or "").strip().startswith('{"loss"'), eid
        (output,) = [a for a in artifacts if a["execution_id"] == eid and a["name"] == "out.txt"]
        assert store.has_blob(output["sha256"]), output

    again = sweep_cli(
        "jobs", "pull", job_id, "--address", bed.dashboard_url,
        cwd=project, env=bed.driver_env, timeout=300,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "0 new executions, 0 new sweeps" in again.stderr
    assert len(Store.open(project / ".sweeper").read_dataset("executions").to_pylist()) == 4
