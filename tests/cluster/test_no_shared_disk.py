"""Sweeps, runs and pipelines on a Ray cluster whose worker nodes share no disk with the driver.

Every check reads the driver's store only (the `sweep` commands a user runs on the driver,
or the store's datasets): on a real cluster of separate machines that is all there is.
The cluster (tests/cluster/nodisk.py) proves its own isolation before the first test.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sweeper.store import Store
from tests.cluster.nodisk import NoDiskCluster, no_disk_cluster
from tests.conftest import sweep_cli
from tests.faults.conftest import kill_group, sweep_popen, wait_for

pytestmark = [pytest.mark.ray]


@pytest.fixture(scope="module")
def nodisk_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NoDiskCluster]:
    """Two worker nodes blind to pytest's base temp folder: every project and store."""
    with no_disk_cluster(tmp_path_factory.getbasetemp()) as cluster:
        yield cluster


def sweep(
    cluster: NoDiskCluster, *args: str, cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``sweep ARGS --address HEAD`` as a driver on the head's machine."""
    return sweep_cli(
        *args, "--address", cluster.address, cwd=cwd, env=cluster.driver_env, timeout=timeout
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dataset(project: Path, name: str) -> list[dict[str, Any]]:
    """Rows of one dataset of the driver's store (``.sweeper/`` next to valohai.yaml)."""
    return Store.open(project / ".sweeper").read_dataset(name).to_pylist()


def assert_recorded_on_the_driver(
    cluster: NoDiskCluster, project: Path, rows: list[dict[str, Any]], output: str
) -> None:
    """Each execution ran on a worker, and its log, metric events and output are here.

    The store is read for every execution; ``sweep logs`` and ``sweep outputs -d`` (what a
    user runs) for the first one.
    """
    store = Store.open(project / ".sweeper")
    metrics = store.read_dataset("metrics").to_pylist()
    artifacts = store.read_dataset("artifacts").to_pylist()
    for row in rows:
        eid = row["execution_id"]
        assert row["status"] == "complete", row
        assert row["ray_node"] in cluster.worker_node_ids(), (row["ray_node"], cluster.workers)
        assert '"loss"' in (store.read_log(eid) or ""), eid
        assert "loss" in {m["key"] for m in metrics if m["execution_id"] == eid}, eid
        (recorded,) = [
            a
            for a in artifacts
            if a["execution_id"] == eid and a["direction"] == "output" and a["name"] == output
        ]
        assert store.has_blob(recorded["sha256"]), recorded
    first = rows[0]["execution_id"]
    assert '"loss"' in sweep_cli("logs", first, cwd=project, check=True).stdout
    out = project.parent / f"outputs-{first}"
    sweep_cli("outputs", first, "-d", str(out), cwd=project, check=True)
    (recorded,) = [
        a
        for a in artifacts
        if a["execution_id"] == first and a["direction"] == "output" and a["name"] == output
    ]
    assert sha256(out / output) == recorded["sha256"]


def summary_of(proc: subprocess.CompletedProcess[str] | tuple[str, str]) -> dict[str, Any]:
    """The ``--json`` summary: stdout must hold it alone (scripts pipe it to jq)."""
    out, err = (proc.stdout, proc.stderr) if not isinstance(proc, tuple) else proc
    assert out.lstrip().startswith("{"), f"stdout of --json holds more than JSON:\n{out}\n{err}"
    summary: dict[str, Any] = json.loads(out)
    return summary


def test_sweep_records_every_trial_in_the_drivers_store(
    nodisk_cluster: NoDiskCluster, example_project: Path
) -> None:
    cluster = nodisk_cluster
    proc = sweep(
        cluster,
        "train-model",
        "--trials",
        "4",
        "--metric",
        "loss",
        "--runtime",
        "local",
        "--seed",
        "1",
        "-p",
        "epochs=3",
        "--json",
        cwd=example_project,
    )
    assert proc.returncode == 0, proc.stderr
    summary = summary_of(proc)
    assert summary["trials"] == {"complete": 4, "error": 0, "pruned": 0, "running": 0}
    rows = [
        r for r in dataset(example_project, "executions") if r["sweep_id"] == summary["sweep_id"]
    ]
    assert sorted(r["trial_number"] for r in rows) == [0, 1, 2, 3]
    assert_recorded_on_the_driver(cluster, example_project, rows, "model.npz")
    # the input default in valohai.yaml is a path relative to the project on the driver
    dataset_sha = sha256(example_project / "data" / "spirals.csv")
    inputs = [
        a
        for a in dataset(example_project, "artifacts")
        if a["direction"] == "input" and a["execution_id"] in {r["execution_id"] for r in rows}
    ]
    assert len(inputs) == 4 and {a["sha256"] for a in inputs} == {dataset_sha}
    listed = json.loads(
        sweep_cli(
            "ls", "--sweep", "latest", "--format", "json", cwd=example_project, check=True
        ).stdout
    )
    assert {r["execution_id"] for r in listed} == {r["execution_id"] for r in rows}
    status = json.loads(sweep_cli("status", "--json", cwd=example_project, check=True).stdout)
    assert status["status"] == "complete" and status["trials"]["complete"] == 4
    # no worker made a store (or anything else) of its own at the project's path
    for node in cluster.probe([str(example_project)]):
        if node["node_id"] in cluster.worker_node_ids():
            assert not node["exists"][str(example_project)], node


def test_an_explicit_local_input_reaches_the_workers(
    nodisk_cluster: NoDiskCluster, example_project: Path, tmp_path: Path
) -> None:
    # half of the example's rows, outside the project: a file only the driver has
    lines = (example_project / "data" / "spirals.csv").read_text().splitlines(keepends=True)
    elsewhere = tmp_path / "elsewhere" / "half.csv"
    elsewhere.parent.mkdir()
    elsewhere.write_text("".join(lines[: len(lines) // 2]))
    proc = sweep(
        cluster := nodisk_cluster,
        "train-model",
        "--trials",
        "2",
        "--metric",
        "loss",
        "--runtime",
        "local",
        "-p",
        "epochs=2",
        "--input",
        f"dataset={elsewhere}",
        "--json",
        cwd=example_project,
    )
    assert proc.returncode == 0, proc.stderr
    summary = summary_of(proc)
    assert summary["trials"]["complete"] == 2
    ids = {
        r["execution_id"]
        for r in dataset(example_project, "executions")
        if r["sweep_id"] == summary["sweep_id"]
    }
    inputs = [
        a
        for a in dataset(example_project, "artifacts")
        if a["direction"] == "input" and a["execution_id"] in ids
    ]
    assert len(inputs) == 2, inputs
    assert {a["sha256"] for a in inputs} == {sha256(elsewhere)}
    assert {a["size"] for a in inputs} == {elsewhere.stat().st_size}
    assert all(
        r["ray_node"] in cluster.worker_node_ids()
        for r in dataset(example_project, "executions")
        if r["execution_id"] in ids
    )


def test_run_with_address_records_one_execution_on_the_driver(
    nodisk_cluster: NoDiskCluster, example_project: Path
) -> None:
    proc = sweep(
        nodisk_cluster,
        "run",
        "train-model",
        "--runtime",
        "local",
        "-p",
        "epochs=2",
        "--json",
        cwd=example_project,
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["status"] == "complete"
    rows = dataset(example_project, "executions")
    assert [r["execution_id"] for r in rows] == [record["id"]]
    assert_recorded_on_the_driver(nodisk_cluster, example_project, rows, "model.npz")


def test_pipeline_records_every_node_on_the_driver(
    nodisk_cluster: NoDiskCluster, example_project: Path
) -> None:
    proc = sweep(
        nodisk_cluster,
        "pipeline",
        "run",
        "train-pipeline",
        "--runtime",
        "local",
        "-p",
        "train.epochs=2",
        "--json",
        cwd=example_project,
    )
    assert proc.returncode == 0, proc.stderr
    rows = {r["node"]: r for r in dataset(example_project, "executions")}
    assert set(rows) == {"preprocess", "train", "evaluate"}
    assert {r["status"] for r in rows.values()} == {"complete"}
    assert all(r["ray_node"] in nodisk_cluster.worker_node_ids() for r in rows.values())
    # each edge's file came from its producer, through the driver's store
    inputs = [
        a
        for a in dataset(example_project, "artifacts")
        if a["direction"] == "input" and a["execution_id"] == rows["evaluate"]["execution_id"]
    ]
    producers = {a["name"]: a["producer_execution_id"] for a in inputs}
    assert producers == {
        "model": rows["train"]["execution_id"],
        "test_data": rows["preprocess"]["execution_id"],
    }
    outputs = {
        (a["execution_id"], a["sha256"])
        for a in dataset(example_project, "artifacts")
        if a["direction"] == "output"
    }
    assert {(a["producer_execution_id"], a["sha256"]) for a in inputs} <= outputs
    assert_recorded_on_the_driver(nodisk_cluster, example_project, [rows["train"]], "model.npz")


@pytest.mark.docker
def test_docker_trials_record_every_execution_on_the_driver(
    nodisk_cluster: NoDiskCluster, example_project: Path
) -> None:
    proc = sweep(
        nodisk_cluster,
        "train-model",
        "--trials",
        "2",
        "--metric",
        "loss",
        "--runtime",
        "docker",
        "--pull",
        "never",
        "-p",
        "epochs=2",
        "--json",
        cwd=example_project,
    )
    assert proc.returncode == 0, proc.stderr
    summary = summary_of(proc)
    assert summary["trials"]["complete"] == 2
    rows = [
        r for r in dataset(example_project, "executions") if r["sweep_id"] == summary["sweep_id"]
    ]
    assert len(rows) == 2
    assert {r["image"] for r in rows} == {"sweeper-test/python:latest"}
    assert all(r["image_digest"] for r in rows)
    assert_recorded_on_the_driver(nodisk_cluster, example_project, rows, "model.npz")


#: A stdlib-only step that sleeps, so that a node can be lost while it runs.
SLOW_STEP = """
- step:
    name: slow
    image: sweeper-test/python:latest
    command: python3 ./nodisk_slow_step.py {parameters}
    parameters:
      - name: x
        type: float
        min: 0
        max: 1
      - name: sleep
        type: float
        default: 2
"""

SLOW_PY = """
import argparse, json, os, time
p = argparse.ArgumentParser()
p.add_argument("--x", type=float)
p.add_argument("--sleep", type=float)
a = p.parse_args()
print(json.dumps({"started": 1}), flush=True)
time.sleep(a.sleep)
with open(os.path.join(os.environ["VH_OUTPUTS_DIR"], "out.txt"), "w") as handle:
    handle.write(repr(a.x))
print(json.dumps({"loss": (a.x - 0.3) ** 2}), flush=True)
"""


def _running_steps(pids: list[int]) -> list[int]:
    found = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"nodisk_slow_step.py" in cmdline:
            found.append(pid)
    return found


def test_a_worker_lost_mid_sweep_keeps_every_finished_execution(
    nodisk_cluster: NoDiskCluster, make_project
) -> None:
    cluster = nodisk_cluster
    victim = cluster.workers["w1"]  # the last test: the module's cluster keeps w0 only
    project: Path = make_project(SLOW_STEP, {"nodisk_slow_step.py": SLOW_PY})
    driver = sweep_popen(
        "slow",
        "--trials",
        "8",
        "--parallel",
        "4",
        "--metric",
        "loss",
        "--runtime",
        "local",
        "--seed",
        "2",
        "-p",
        "sleep=1.5..4",
        "--json",
        "--address",
        cluster.address,
        cwd=project,
        **cluster.driver_env,
    )
    try:

        def finished_and_running() -> list[dict[str, Any]] | str | None:
            if driver.poll() is not None:
                return "the sweep ended before a node was lost"
            if not (project / ".sweeper" / "datasets" / "executions").exists():
                return None
            done = [r for r in dataset(project, "executions") if r["status"] == "complete"]
            return done if done and _running_steps(victim.pids()) else None

        finished_before = wait_for(finished_and_running, timeout=180, interval=0.2)
        if not isinstance(finished_before, str):
            cluster.kill_worker("w1")
        out, err = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            kill_group(driver)
    assert not isinstance(finished_before, str), f"{finished_before}:\n{err}"
    assert driver.returncode == 0, err
    summary = summary_of((out, err))
    assert summary["trials"]["complete"] == 8, summary
    rows = {r["execution_id"]: r for r in dataset(project, "executions")}
    # what had finished before the loss is still there, unchanged
    for row in finished_before:
        now = rows[row["execution_id"]]
        assert (now["status"], now["metric.loss"], now["ended_at"]) == (
            "complete",
            row["metric.loss"],
            row["ended_at"],
        )
    complete = [r for r in rows.values() if r["status"] == "complete"]
    assert len(complete) == 8
    lost = [r for r in rows.values() if r["status"] != "complete"]
    for row in lost:
        assert row["status"] == "crashed", row
        assert row["error"].startswith("the Ray actor running it died"), row
        assert row["sweep_id"] == summary["sweep_id"], row
        # None: a retry placed on the node before Ray knew it was lost, whose actor died
        # before it could start the execution; the driver still records what it planned
        assert row["ray_node"] in (victim.node_id, None), row
        assert row["step"] == "slow" and row["trial_number"] is not None, row
    assert any(r["ray_node"] == victim.node_id for r in lost), lost
    assert_recorded_on_the_driver(cluster, project, complete, "out.txt")
