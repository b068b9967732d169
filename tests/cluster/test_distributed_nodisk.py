"""A distributed task across two worker nodes that share no disk with the driver or each other.

The members are placed one per worker (the head has no CPUs; SPREAD over the two workers),
get their code from the store, and still find each other through distributed.json alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from sweeper.store import Store
from tests.cluster.distributed_project import write_project
from tests.cluster.nodisk import NoDiskCluster, no_disk_cluster
from tests.conftest import sweep_cli

pytestmark = [pytest.mark.ray, pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def nodisk_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NoDiskCluster]:
    """Two worker nodes blind to pytest's base temp folder: the project and the store."""
    with no_disk_cluster(tmp_path_factory.getbasetemp()) as cluster:
        yield cluster


def test_members_on_two_workers_swap_messages(
    tmp_path: Path, nodisk_cluster: NoDiskCluster
) -> None:
    """Each member runs on its own worker; rank 0 listens, rank 1 connects; both records,
    in the driver's store, show what the other sent."""
    project = write_project(tmp_path / "p")
    proc = sweep_cli(
        "sweep", "rendezvous", "--task", "pair", "--runtime", "local", "--json",
        "--address", nodisk_cluster.address,
        cwd=project, env=nodisk_cluster.driver_env, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout)
    store = Store.open(project / ".sweeper")
    records = [store.get_record(m["execution_id"]) for m in summary["members"]]
    assert all(r is not None for r in records)
    first, second = (r for r in records if r is not None)
    assert {first.ray_node, second.ray_node} == nodisk_cluster.worker_node_ids()
    assert (first.metrics["received"], second.metrics["received"]) == (
        "hello from member 1",
        "hello from member 0",
    )
    assert first.group_id == second.group_id == summary["group_id"]
