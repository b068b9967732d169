"""Resume after the driver was killed with SIGKILL: completed nodes are not run again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.pipeline.support import PIPELINES, PROBE_PY, node_records, pipeline_main, record

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("local_ray")]


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def read_run(project: Path) -> dict | None:
    runs = sorted((project / ".sweeper" / "pipelines").glob("*/run.json"))
    if not runs:
        return None
    try:
        return json.loads(runs[-1].read_text())
    except ValueError:  # caught mid-rewrite
        return None


def second_is_running(project: Path) -> bool:
    run = read_run(project)
    if run is None:
        return False
    children = run["nodes"]["second"]["children"]
    if not children or not children[0]["execution_id"]:
        return False
    path = project / ".sweeper" / "executions" / children[0]["execution_id"] / "execution.json"
    return path.exists() and json.loads(path.read_text()).get("status") == "started"


def test_resume_after_kill_9_of_the_driver(make_project, capsys) -> None:
    import ray

    project = make_project(PIPELINES, {"probe.py": PROBE_PY})
    # The driver joins this module's Ray as a second job: killing it kills its actors
    # (they belong to its job) while the cluster lives on, as on a real cluster.
    address = ray.get_runtime_context().gcs_address
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sweeper.cli.commands_pipeline",
            "run",
            "slow-chain",
            "--runtime",
            "local",
            "--address",
            address,
            "-f",
            str(project / "valohai.yaml"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(
            lambda: second_is_running(project) or driver.poll() is not None,
            90,
            "node second to start",
        )
        assert driver.poll() is None, driver.stderr.read() if driver.stderr else ""
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            os.kill(driver.pid, signal.SIGKILL)
            driver.wait()
    before = read_run(project)
    assert before is not None and before["status"] == "running"
    run_id = before["pipeline_run_id"]
    first_id = before["nodes"]["first"]["children"][0]["execution_id"]
    killed_id = before["nodes"]["second"]["children"][0]["execution_id"]

    code, out, err = pipeline_main(
        ["resume", run_id, "--json", "-f", str(project / "valohai.yaml")], capsys
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["status"] == "complete"
    assert summary["nodes"]["first"]["execution_id"] == first_id
    assert [r["id"] for r in node_records(project, run_id, "first")] == [first_id]
    second = node_records(project, run_id, "second")
    assert [(r["id"], r["status"], r["attempt"]) for r in second][0] == (killed_id, "crashed", 1)
    assert [(r["status"], r["attempt"]) for r in second][1:] == [("complete", 2)]
    third = record(project, summary["nodes"]["third"]["execution_id"])
    assert third["inputs"][0]["producer_execution_id"] == second[1]["id"]

    assert record(project, killed_id)["status"] == "crashed"  # its actor died with the driver

    # Resuming a complete run runs nothing.
    code, out, _ = pipeline_main(
        ["resume", run_id, "--json", "-f", str(project / "valohai.yaml")], capsys
    )
    assert code == 0 and json.loads(out)["nodes"] == summary["nodes"]
    assert len(node_records(project, run_id, "second")) == 2
