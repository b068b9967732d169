"""A Ray worker node removed while it runs an execution (ray.cluster_utils.Cluster).

The execution is recorded as crashed, its trial runs again elsewhere and the sweep ends
with every trial finished.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster

from tests.faults.conftest import processes_under, records, rows, sweep_in_background, wait_for
from tests.sweep.test_sweep import make_runner

pytestmark = [pytest.mark.faults, pytest.mark.ray]

FAST_DEATH = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_failure_threshold": 3,
}


@pytest.fixture
def two_worker_cluster() -> Iterator[Cluster]:
    """A head that runs nothing and two 1-CPU worker nodes."""
    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False, "_system_config": FAST_DEATH},
    )
    cluster.add_node(num_cpus=1)
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_removed_node_crashes_the_execution_and_it_runs_again(
    two_worker_cluster: Cluster, tiny_project: Path
) -> None:
    cluster = two_worker_cluster
    runner = make_runner(
        tiny_project,
        step="tiny",
        trials=3,
        parallel=2,
        metrics=["loss"],
        runtime="local",
        seed=1,
        specs={"x": ["0..1"], "sleep": ["2.5"]},
        address=cluster.address,
    )
    driver, outcome = sweep_in_background(runner)
    store_dir = tiny_project / ".sweeper"
    workers = {node.node_id: node for node in cluster.worker_nodes}

    def running_on_a_worker() -> dict[str, Any] | None:
        for record in records(store_dir) if store_dir.exists() else []:
            if record["status"] == "started" and record.get("ray_node") in workers:
                return record
        return None

    victim = wait_for(running_on_a_worker, timeout=120)
    cluster.remove_node(workers[victim["ray_node"]], allow_graceful=False)
    driver.join(timeout=180)
    assert not driver.is_alive(), "the sweep did not finish after losing a node"
    assert "error" not in outcome, outcome.get("error")
    summary = outcome["summary"]
    assert summary["trials"] == {"complete": 3, "error": 0, "pruned": 0, "running": 0}

    by_id = {r["execution_id"]: r for r in rows(store_dir)}
    crashed = by_id[victim["id"]]
    assert crashed["status"] == "crashed"
    record = next(r for r in records(store_dir) if r["id"] == victim["id"])
    assert record["status"] == "crashed" and "Ray actor" in record["error"]
    retry = [
        r
        for r in by_id.values()
        if r["status"] == "complete" and r["param.x"] == victim["parameters"]["x"]
    ]
    assert len(retry) == 1 and retry[0]["attempt"] == 2
    assert retry[0]["ray_node"] != victim["ray_node"]
    complete = [r for r in by_id.values() if r["status"] == "complete"]
    assert len(complete) == 3
    # Besides the victim, an execution Ray placed on the node before it knew the node was
    # gone may have crashed too (and run again): every other execution is such a crash.
    for row in by_id.values():
        if row["status"] != "complete":
            assert row["status"] == "crashed" and "Ray actor" in row["error"], row
            assert row["step"] == "tiny" and row["trial_number"] is not None, row
    # the step of the lost node does not live on
    wait_for(lambda: processes_under(tiny_project) == [], timeout=10)
