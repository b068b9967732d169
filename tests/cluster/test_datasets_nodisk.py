"""A dataset version made on one worker node and read on a worker node, neither of which
shares a disk with the driver (tests/cluster/nodisk.py): the version lives in the driver's
store only, and both ends reach it through Ray."""

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

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def nodisk_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NoDiskCluster]:
    """Two worker nodes blind to pytest's base temp folder: every project and store."""
    with no_disk_cluster(tmp_path_factory.getbasetemp()) as cluster:
        yield cluster


def _run(cluster: NoDiskCluster, project: Path, *args: str) -> dict[str, Any]:
    """``sweep run ARGS --address HEAD --json`` as a driver on the head's machine."""
    proc: subprocess.CompletedProcess[str] = sweep_cli(
        "run", *args, "--runtime", "local", "--json", "--address", cluster.address,
        cwd=project, env=cluster.driver_env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    record: dict[str, Any] = json.loads(proc.stdout)
    assert record["status"] == "complete", record
    return record


def test_a_version_made_on_one_worker_is_read_on_another(
    nodisk_cluster: NoDiskCluster, example_project: Path
) -> None:
    made = _run(nodisk_cluster, example_project, "package-spirals", "-p", "version=v1")
    used = _run(nodisk_cluster, example_project, "count-spirals")
    workers = nodisk_cluster.worker_node_ids()
    store = Store.open(example_project / ".sweeper")
    rows = {r["execution_id"]: r for r in store.read_dataset("executions").to_pylist()}
    assert {rows[made["id"]]["ray_node"], rows[used["id"]]["ray_node"]} <= workers
    assert used["metrics"] == {"files": 3, "rows": 900}
    assert {i["uri"] for i in used["inputs"]} == {"dataset://spirals/v1"}
    assert {i["producer_execution_id"] for i in used["inputs"]} == {made["id"]}
    made_files = {o["path"]: o["sha256"] for o in made["outputs"]}
    assert {i["path"][len("spirals/") :]: i["sha256"] for i in used["inputs"]} == made_files
    raw = (example_project / "data" / "spirals.csv").read_text().splitlines()
    arm = "\n".join([raw[0], *[row for row in raw[1:] if row.endswith(",1")]]) + "\n"
    assert made_files["arm-1.csv"] == hashlib.sha256(arm.encode()).hexdigest()
    listed = json.loads(
        sweep_cli("datasets", "spirals", "--json", cwd=example_project, check=True).stdout
    )
    assert [(v["uri"], v["made_by"], v["used_by"]) for v in listed] == [
        ("dataset://spirals/v1", made["id"], [used["id"]])
    ]
    # a worker that names the same version again is refused, on the driver's word
    again = _run(nodisk_cluster, example_project, "package-spirals", "-p", "version=v1")
    assert "dataset_versions" not in again and "exists" in again["warnings"][0]
