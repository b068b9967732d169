"""kill -9 of the sweep driver at many points, then ``sweep resume``: exactly N trials, nothing lost.

Each sweep is killed several times in a row (the original driver and then resumed drivers
too), at points chosen by how many executions had finished or by seeded random delays, and a
last ``sweep resume`` finishes it. Drivers join one shared Ray head so that a kill/resume
cycle costs seconds, not an embedded Ray start.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sweeper.store import Store
from tests.conftest import sweep_cli
from tests.faults.conftest import (
    assert_clean_error,
    kill_group,
    processes_under,
    records,
    sweep_popen,
    wait_for,
)

pytestmark = [pytest.mark.faults, pytest.mark.ray]

TRIALS = 6


def _finished(store_dir: Path) -> int:
    # final records, not dataset parts: actors write their rows in batches
    return len([r for r in records(store_dir) if r.get("status") in ("complete", "crashed")])


def _saved(store_dir: Path) -> bool:
    return any(store_dir.glob("sweeps/*/optuna.journal"))


def _wait_until(driver: subprocess.Popen[str], predicate: Any) -> None:
    wait_for(lambda: predicate() or driver.poll() is not None)


def _sweep_args(project: Path, address: str, sleep: float) -> list[str]:
    return [
        "tiny",
        "--trials",
        str(TRIALS),
        "--parallel",
        "2",
        "--metric",
        "loss",
        "--runtime",
        "local",
        "--seed",
        "7",
        "-p",
        "x=0..1",
        "-p",
        f"sleep={sleep}",
        "--json",
        "--address",
        address,
        "-f",
        str(project / "valohai.yaml"),
    ]


def _resume_args(project: Path, address: str) -> list[str]:
    return ["resume", "--json", "--address", address, "-f", str(project / "valohai.yaml")]


def check_sweep(project: Path, sweep_id: str) -> dict[str, Any]:
    """Exactly TRIALS finished trials, no duplicate, every one with its outputs and metrics."""
    store_dir = project / ".sweeper"
    store = Store.open(store_dir)
    all_rows = store.read_dataset("executions").to_pylist()
    mine = [r for r in all_rows if r["sweep_id"] == sweep_id]
    ids = [r["execution_id"] for r in mine]
    assert len(ids) == len(set(ids)), f"duplicated execution rows: {sorted(ids)}"
    counters = [r["counter"] for r in all_rows]
    assert len(counters) == len(set(counters)), f"duplicated counters: {sorted(counters)}"
    complete = [r for r in mine if r["status"] == "complete"]
    assert sorted(r["trial_number"] for r in complete) == sorted(
        {r["trial_number"] for r in complete}
    ), "a trial finished twice"
    assert len(complete) == TRIALS, [(r["trial_number"], r["status"]) for r in mine]
    assert {r["status"] for r in mine} <= {"complete", "crashed"}, mine
    metric_ids = {r["execution_id"] for r in store.read_dataset("metrics").to_pylist()}
    artifacts = store.read_dataset("artifacts").to_pylist()
    for row in complete:
        record = store.read_json(f"executions/{row['execution_id']}/execution.json")
        assert record is not None and record["status"] == "complete"
        assert row["metric.loss"] is not None
        assert row["execution_id"] in metric_ids, f"metrics rows of {row['execution_id']} lost"
        outs = [a for a in artifacts if a["execution_id"] == row["execution_id"]]
        assert [o["path"] for o in record["outputs"]] == ["out.txt"]
        assert outs and all(store.has_blob(o["sha256"]) for o in outs)
        blob = store.blob_local_path(record["outputs"][0]["sha256"])
        assert blob is not None and float(blob.read_text()) == row["param.x"]
    # every execution the driver started ended in the store: none is left "started"
    unfinished = [
        r["id"]
        for r in records(store_dir)
        if r["sweep_id"] == sweep_id and r["status"] not in ("complete", "crashed")
    ]
    assert unfinished == []
    return {"rows": len(mine), "complete": len(complete)}


def _run_with_kills(
    project: Path, address: str, kill_points: list[tuple[str, float]], sleep: float
) -> str:
    store_dir = project / ".sweeper"
    first = True
    kills = 0
    for kind, value in kill_points:
        args = _sweep_args(project, address, sleep) if first else _resume_args(project, address)
        before = _finished(store_dir)
        driver = sweep_popen(*args)
        if kind == "finished":
            # kill once `value` more executions have ended (and,
            # for the first driver, once the sweep is saved: before, nothing can resume)
            _wait_until(
                driver, lambda n=before + value: _finished(store_dir) >= n and _saved(store_dir)
            )
        else:
            if first:
                _wait_until(driver, lambda: _saved(store_dir))
            try:
                driver.wait(timeout=value)
            except subprocess.TimeoutExpired:  # still running: the point of the test
                pass
        if driver.poll() is not None:
            out, err = driver.communicate()
            if driver.returncode == 0 and kind == "delay" and not first:
                break  # it finished all the trials before this point: nothing left to kill
            raise AssertionError(f"driver ended before its kill point ({kind} {value}): {err}")
        kill_group(driver, signal.SIGKILL)
        kills += 1
        first = False
    final = sweep_cli(*_resume_args(project, address), timeout=180)
    assert final.returncode == 0, final.stderr
    assert "Traceback" not in final.stderr
    summary = json.loads(final.stdout)
    assert kills >= len(kill_points) - 1, f"only {kills} of the kill points were reached"
    assert summary["trials"]["complete"] == TRIALS, summary
    assert summary["trials"]["error"] == 0 and summary["trials"]["running"] == 0
    return str(summary["sweep_id"])


def test_kill_after_k_finished_executions(tiny_project: Path, ray_head: str) -> None:
    # 5 kill points: at once, then after 1, 2 and 1 more finished executions, and while
    # the resumed driver is still settling the trials of the one before.
    points = [("finished", 0), ("finished", 1), ("finished", 2), ("finished", 1), ("delay", 0.3)]
    sweep_id = _run_with_kills(tiny_project, ray_head, points, sleep=0.4)
    check_sweep(tiny_project, sweep_id)
    assert processes_under(tiny_project) == []


def test_kill_after_random_delays(tiny_project: Path, ray_head: str) -> None:
    rng = random.Random(20240611)
    # a resumed driver needs ~1.5 s to connect and settle: short delays kill it there
    points = [("delay", round(rng.uniform(0.2, 2.5), 2)) for _ in range(5)]
    sweep_id = _run_with_kills(tiny_project, ray_head, points, sleep=1.0)
    check_sweep(tiny_project, sweep_id)
    assert processes_under(tiny_project) == []


def test_second_driver_of_a_running_sweep_is_refused_until_the_first_dies(
    tiny_project: Path, ray_head: str
) -> None:
    """The running driver is the journal's only writer: a second one is refused, not run.

    Two drivers would both run the remaining trials (past --trials) and write one journal
    at once; after a kill -9 the kernel has dropped the lock and resume goes ahead.
    """
    store_dir = tiny_project / ".sweeper"
    driver = sweep_popen(*_sweep_args(tiny_project, ray_head, sleep=1.0))
    try:
        _wait_until(driver, lambda: _finished(store_dir) >= 1)
        assert driver.poll() is None, driver.communicate()
        second = sweep_cli(*_resume_args(tiny_project, ray_head), timeout=180)
        err = assert_clean_error(second)
        assert "is running in another process" in err, err
        assert driver.poll() is None, "the refused driver stopped the running one"
    finally:
        kill_group(driver, signal.SIGKILL)
    final = sweep_cli(*_resume_args(tiny_project, ray_head), timeout=180)
    assert final.returncode == 0, final.stderr
    sweep_id = json.loads(final.stdout)["sweep_id"]
    check_sweep(tiny_project, sweep_id)


UNTIL_STEP = """
- step:
    name: until
    image: sweeper-test/python:latest
    command: python3 ./until.py {parameters}
    parameters:
      - name: x
        type: float
        default: 0.5
    mounts:
      - source: GATE
        destination: /gate
        readonly: true
"""

#: Every attempt waits until the test opens the gate (a file on a mount it declares).
UNTIL_PY = """
import argparse, json, os, time
p = argparse.ArgumentParser()
p.add_argument("--x", type=float)
a = p.parse_args()
while not os.path.exists("/gate/open"):
    time.sleep(0.05)
print(json.dumps({"loss": a.x}), flush=True)
"""


@pytest.mark.docker
def test_kill_during_docker_executions_leaves_no_container(
    make_project, ray_head: str, tmp_path: Path
) -> None:
    """A killed driver's Ray workers die, its containers run on: resume removes them."""
    from tests.faults.conftest import containers, containers_left

    gate = tmp_path / "gate"
    gate.mkdir()
    step = UNTIL_STEP.replace("GATE", str(gate))
    project: Path = make_project(step, {"until.py": UNTIL_PY}, name="until")
    store_dir = project / ".sweeper"
    driver = sweep_popen(
        "until",
        "--trials",
        "2",
        "--parallel",
        "2",
        "--metric",
        "loss",
        "--runtime",
        "docker",
        "-p",
        "x=0.1,0.9",
        "--json",
        "--address",
        ray_head,
        "-f",
        str(project / "valohai.yaml"),
    )

    def started() -> list[str]:
        found = records(store_dir) if store_dir.exists() else []
        ids = [r["id"] for r in found if r["status"] == "started"]
        running = [i for i in ids if containers(f"sweeper.execution_id={i}")]
        if driver.poll() is not None:
            raise AssertionError(driver.communicate()[1])
        return running if len(running) == 2 else []

    first = wait_for(started, timeout=120)
    kill_group(driver, signal.SIGKILL)
    # held at the gate, the containers outlive the driver: nothing of it is left to end them
    assert all(containers(f"sweeper.execution_id={i}") for i in first), "they run on"
    (gate / "open").write_text("")
    resumed = sweep_cli(*_resume_args(project, ray_head), timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["trials"]["complete"] == 2
    for execution_id in first:
        assert containers(f"sweeper.execution_id={execution_id}") == []
    every = [r["id"] for r in records(store_dir)]
    assert all(containers_left(f"sweeper.execution_id={i}") == [] for i in every)
    rows = [r for r in Store.open(store_dir).read_dataset("executions").to_pylist()]
    assert sorted(r["status"] for r in rows) == ["complete", "complete", "crashed", "crashed"]
