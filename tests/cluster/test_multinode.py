"""Sweeps on a real multi-node Ray (ray.cluster_utils.Cluster) with fake GPUs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster

from tests.sweep.test_sweep import PROBE_PY, PROBE_STEP, executions, make_runner


@pytest.fixture(scope="module")
def gpu_cluster() -> Iterator[Cluster]:
    """A head without GPUs and two worker nodes with 2 fake GPUs each."""
    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0})
    cluster.add_node(num_cpus=2, num_gpus=2)
    cluster.add_node(num_cpus=2, num_gpus=2)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def _overlapping(rows: list[dict]) -> list[tuple[dict, dict]]:
    spans = [
        (
            datetime.fromisoformat(str(r["started_at"])),
            datetime.fromisoformat(str(r["ended_at"])),
            r,
        )
        for r in rows
    ]
    pairs = []
    for i, (s1, e1, r1) in enumerate(spans):
        for s2, e2, r2 in spans[i + 1 :]:
            if s1 < e2 and s2 < e1:
                pairs.append((r1, r2))
    return pairs


def test_one_actor_per_execution_with_distinct_gpus(gpu_cluster: Cluster, make_project) -> None:
    project: Path = make_project(PROBE_STEP, {"probe.py": PROBE_PY})
    runner = make_runner(
        project,
        step="probe",
        trials=8,
        parallel=4,
        metrics=["loss"],
        runtime="local",
        gpus_per_trial=1,
        cpus_per_trial=0.5,
        specs={"sleep": ["1.0"], "x": ["0..0.8"]},
        address=gpu_cluster.address,
    )
    summary = runner.run()
    assert summary["trials"]["complete"] == 8
    rows = executions(project, summary["sweep_id"])
    for row in rows:
        assert row["ray_node"]
        gpu_ids = (
            row["gpu_ids"]
            if isinstance(row["gpu_ids"], list)
            else __import__("json").loads(row["gpu_ids"])
        )
        assert len(gpu_ids) == 1
        # the GPU Ray assigned is the one the step saw
        assert row["metric.gpus"] == gpu_ids[0]
    overlapping = _overlapping(rows)
    assert overlapping, "trials should have run concurrently"
    for a, b in overlapping:
        assert (a["ray_node"], a["metric.gpus"]) != (b["ray_node"], b["metric.gpus"])
    assert len({r["ray_node"] for r in rows}) == 2


def test_fractional_gpus_pack_two_trials_per_device(gpu_cluster: Cluster, make_project) -> None:
    project: Path = make_project(PROBE_STEP, {"probe.py": PROBE_PY})
    runner = make_runner(
        project,
        step="probe",
        trials=8,
        parallel=8,
        metrics=["loss"],
        runtime="local",
        gpus_per_trial=0.5,
        cpus_per_trial=0.25,
        specs={"sleep": ["1.5"], "x": ["0..0.8"]},
        address=gpu_cluster.address,
    )
    summary = runner.run()
    assert summary["trials"]["complete"] == 8
    rows = executions(project, summary["sweep_id"])
    shared = [
        (a, b)
        for a, b in _overlapping(rows)
        if (a["ray_node"], a["metric.gpus"]) == (b["ray_node"], b["metric.gpus"])
    ]
    assert shared, "two 0.5-GPU trials should share one device at the same time"


def test_a_trial_larger_than_any_node_fails_fast(gpu_cluster: Cluster, make_project) -> None:
    from sweeper.errors import ClusterError

    project: Path = make_project(PROBE_STEP, {"probe.py": PROBE_PY})
    runner = make_runner(
        project,
        step="probe",
        trials=1,
        metrics=["loss"],
        runtime="local",
        gpus_per_trial=3,
        address=gpu_cluster.address,
    )
    with pytest.raises(ClusterError, match="3 GPUs"):
        runner.run()
