"""kill -9 while the actors hold finished executions' rows: resume rebuilds them, exactly once.

A sweep's actors write their dataset rows in batches (``SWEEPER_ROWS_FLUSH_S``); here they
hold them for an hour, so every execution finished before the kill has its final
``execution.json`` and no row at all. ``sweep resume`` must end at exactly N trials with
one row (and the metrics and artifacts) of every finished execution.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from ray.cluster_utils import Cluster

from sweeper.store import Store
from tests.conftest import sweep_cli
from tests.faults.conftest import (
    kill_group,
    processes_under,
    records,
    sweep_in_background,
    sweep_popen,
    wait_for,
)
from tests.faults.test_driver_kill import TRIALS, _resume_args, _sweep_args, check_sweep
from tests.faults.test_node_loss import two_worker_cluster  # noqa: F401 - a fixture
from tests.sweep.test_sweep import make_runner

pytestmark = [pytest.mark.faults, pytest.mark.ray]

HOLD = {"SWEEPER_ROWS_FLUSH_S": "3600"}


def _finished(store_dir: Path) -> list[str]:
    return [r["id"] for r in records(store_dir) if r.get("status") == "complete"]


def test_kill_9_with_rows_held_then_resume_rebuilds_them(tiny_project: Path, ray_head: str) -> None:
    store_dir = tiny_project / ".sweeper"
    driver = sweep_popen(*_sweep_args(tiny_project, ray_head, sleep=0.3), **HOLD)
    wait_for(lambda: len(_finished(store_dir)) >= 3 or driver.poll() is not None, timeout=180)
    assert driver.poll() is None, driver.communicate()[1]
    kill_group(driver, signal.SIGKILL)
    finished = _finished(store_dir)
    assert 3 <= len(finished) < TRIALS
    # the kill took the held rows: the records are all that is left of these executions
    assert Store.open(store_dir).read_dataset("executions").num_rows == 0

    resumed = sweep_cli(*_resume_args(tiny_project, ray_head), timeout=240, env=HOLD)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["trials"]["complete"] == TRIALS, summary
    sweep_id = str(summary["sweep_id"])
    check_sweep(tiny_project, sweep_id)  # one row each, metrics and artifacts, no duplicate
    rows = Store.open(store_dir).read_dataset("executions").to_pylist()
    assert set(finished) <= {r["execution_id"] for r in rows}
    assert processes_under(tiny_project) == []


def test_rows_held_by_an_actor_on_a_lost_node_are_rebuilt_at_the_end(
    two_worker_cluster: Cluster,  # noqa: F811 - the fixture imported above
    tiny_project: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SWEEPER_ROWS_FLUSH_S", "3600")
    cluster = two_worker_cluster
    runner = make_runner(
        tiny_project,
        step="tiny",
        trials=4,
        parallel=2,
        metrics=["loss"],
        runtime="local",
        seed=3,
        specs={"x": ["0..1"], "sleep": ["1.5"]},
        address=cluster.address,
    )
    driver, outcome = sweep_in_background(runner)
    store_dir = tiny_project / ".sweeper"
    workers = {node.node_id: node for node in cluster.worker_nodes}

    def second_run_on_a_node() -> tuple[str, list[str]] | None:
        # an actor that finished one execution (its rows held) and runs the next
        mine = records(store_dir) if store_dir.exists() else []
        for record in mine:
            node = record.get("ray_node")
            done = [
                r["id"] for r in mine if r.get("ray_node") == node and r["status"] == "complete"
            ]
            if record["status"] == "started" and node in workers and done:
                return str(node), done
        return None

    node, held = wait_for(second_run_on_a_node, timeout=120)
    assert Store.open(store_dir).without_rows(held) == held  # held by the actor, not written
    cluster.remove_node(workers[node], allow_graceful=False)
    driver.join(timeout=180)
    assert not driver.is_alive(), "the sweep did not finish after losing a node"
    assert "error" not in outcome, outcome.get("error")
    assert outcome["summary"]["trials"]["complete"] == 4
    store = Store.open(store_dir)
    executions = store.read_dataset("executions").to_pylist()
    ids = [r["execution_id"] for r in executions]
    assert len(ids) == len(set(ids)), "an execution's rows were written twice"
    complete = [r["id"] for r in records(store_dir) if r["status"] == "complete"]
    assert len(complete) == 4 and set(complete) <= set(ids)
    assert set(held) <= {r["execution_id"] for r in store.read_dataset("metrics").to_pylist()}
    assert processes_under(tiny_project) == []
