"""Distributed task nodes in pipelines, on a real Ray head (4 CPUs) through the real command:
a group the cluster cannot hold fails its node alone, and the node's on-error decides the rest.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sweeper.store import Store
from tests.cluster.distributed_project import write_project
from tests.conftest import sweep_cli

pytestmark = [pytest.mark.ray, pytest.mark.timeout(900)]

#: The group, a node after it (skipped by stop-next) and a branch of its own (runs on).
BRANCHES = """
- pipeline:
    name: group-and-branch
    nodes:
      - name: members
        type: task
        task: pair
        on-error: stop-next
      - name: report
        type: execution
        step: report
      - name: other
        type: execution
        step: report
    edges:
      - [members.metadata.member, report.parameter.member]
"""


def test_a_group_the_cluster_cannot_hold_fails_only_its_node(tmp_path: Path, ray_head: str) -> None:
    """Three members of 2 CPUs on 4 CPUs: the node fails saying so, its members are recorded
    failed, the node after it is skipped (stop-next) and the other branch completes."""
    project = write_project(tmp_path / "p", count=3, cpus=2)
    with (project / "valohai.yaml").open("a") as f:
        f.write(BRANCHES)
    proc = sweep_cli(
        "pipeline", "run", "group-and-branch", "--runtime", "local",
        "--address", ray_head, "--json", cwd=project, timeout=600,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr and "sweep: error" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stdout + proc.stderr
    run = json.loads(proc.stdout)
    nodes = run["nodes"]
    assert run["status"] == "error"
    assert (nodes["members"]["status"], nodes["report"]["status"], nodes["other"]["status"]) == (
        "error",
        "skipped",
        "complete",
    )
    error = nodes["members"]["error"]
    assert error.startswith("the group could not be placed: the distributed task needs 3 members")
    assert "room for 2" in error
    store = Store.open(project / ".sweeper")
    members = [store.get_record(i) for i in nodes["members"]["execution_ids"]]
    assert len(members) == 3
    for record in members:
        assert record is not None and record.status == "error" and record.started_at is None
        assert record.failure_kind == "infrastructure" and record.error == error
