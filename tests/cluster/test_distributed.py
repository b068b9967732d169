"""Distributed tasks: members placed together on real Ray, talking through distributed.json.

Every group here runs on a real Ray head (4 CPUs) through the real ``sweep`` command; the
members are real processes that find each other with nothing but their
``/valohai/config/distributed.json`` (tests/cluster/distributed_project.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sweeper.execution.distributed import GroupConfig, MemberAddress, write_distributed_config
from sweeper.record import ExecutionRecord
from sweeper.store import Store
from tests.cluster.distributed_project import write_project
from tests.conftest import sweep_cli

pytestmark = [pytest.mark.ray, pytest.mark.timeout(1500)]


def _records(project: Path, summary: dict) -> list[ExecutionRecord]:
    store = Store.open(project / ".sweeper")
    records = [store.get_record(m["execution_id"]) for m in summary["members"]]
    assert all(r is not None for r in records)
    return [r for r in records if r is not None]


def test_valohai_utils_reads_each_members_config(tmp_path: Path) -> None:
    """The file each member gets is what valohai-utils' ``valohai.distributed`` parses: ranks
    by member id, the master, each member's address and exposed port; the YAML says the same."""
    from valohai.internals.distributed_config import DistributedConfig

    members = tuple(
        MemberAddress(
            member_id=str(i),
            job_id=f"exec-{i}",
            identity=f"node-{i}",
            local_ips=(f"10.0.0.{i + 1}",),
            ports=(40000 + i,),
            announce_time="2026-01-01T00:00:00",
        )
        for i in (1, 0, 2)  # out of order, as members announce themselves
    )
    group = GroupConfig(group_name="task-g", members=members)
    write_distributed_config(tmp_path, group.member_config("2"))
    data = json.loads((tmp_path / "distributed.json").read_text())
    assert yaml.safe_load((tmp_path / "distributed.yaml").read_text()) == data
    parsed = DistributedConfig.from_json_data(data)
    assert (parsed.group_name, parsed.member_id, parsed.required_count) == ("task-g", "2", 3)
    ranks = {m.member_id: m.rank for m in parsed.members}
    assert ranks == {"0": 0, "1": 1, "2": 2}
    master = next(m for m in parsed.members if m.is_master)
    assert (master.job_id, master.primary_local_ip, master.exposed_ports) == (
        "exec-0",
        "10.0.0.1",
        {"40000": "40000"},
    )
    assert data["self"]["member_id"] == "2"


def test_two_members_swap_messages_through_distributed_json(tmp_path: Path, ray_head: str) -> None:
    """Rank 0 listens on its reserved port, rank 1 connects: both records show the message
    the other sent, and belong to one group with member ids 0 and 1."""
    project = write_project(tmp_path / "p")
    proc = sweep_cli(
        "sweep", "rendezvous", "--task", "pair", "--runtime", "local",
        "--address", ray_head, "--json", cwd=project, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["status"] == "complete" and summary["first_failure"] is None
    records = _records(project, summary)
    assert [r.member_id for r in records] == ["0", "1"]
    assert {r.group_id for r in records} == {summary["group_id"]}
    assert [r.metrics["received"] for r in records] == [
        "hello from member 1",
        "hello from member 0",
    ]
    ports = [tuple(r.distributed["self"]["network"]["exposed_ports"]) for r in records]
    assert len(set(ports)) == 2, ports  # a port reserved for each member
    assert records[0].distributed["members"] == records[1].distributed["members"]


def test_a_group_the_cluster_cannot_hold_starts_nothing(tmp_path: Path, ray_head: str) -> None:
    """Three members of 2 CPUs on a 4-CPU cluster: one clear error naming what the group
    needs and what the cluster has, and no execution is started or recorded."""
    project = write_project(tmp_path / "p", count=3, cpus=2)
    proc = sweep_cli(
        "sweep", "rendezvous", "--task", "pair", "--runtime", "local",
        "--address", ray_head, cwd=project, timeout=600,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "sweep: error: the distributed task needs 3 members of 2 CPUs each" in proc.stderr
    assert "room for 2" in proc.stderr and "Traceback" not in proc.stderr
    store = project / ".sweeper"
    assert not store.exists() or Store.open(store).read_dataset("executions").num_rows == 0
    assert not list(store.glob("executions/*/execution.json"))


def test_a_busy_cluster_that_cannot_place_the_group_in_time(tmp_path: Path, ray_head: str) -> None:
    """A group that would fit an idle cluster but not the free part of a busy one waits
    SWEEPER_GROUP_WAIT_S, then fails saying what is free now; nothing started."""
    import ray

    ray.init(address=ray_head, log_to_driver=False)
    try:
        hold = ray.util.placement_group([{"CPU": 3}])  # most of the head's 4 CPUs, held
        ray.get(hold.ready(), timeout=120)
        project = write_project(tmp_path / "p")
        proc = sweep_cli(
            "sweep", "rendezvous", "--task", "pair", "--runtime", "local",
            "--address", ray_head, cwd=project, timeout=600,
            env={"SWEEPER_GROUP_WAIT_S": "3"},
        )  # fmt: skip
    finally:
        ray.shutdown()
    assert proc.returncode != 0
    assert "could not all be placed within 3s" in proc.stderr, proc.stderr
    assert "1 CPUs and 0 GPUs free now" in proc.stderr, proc.stderr
    assert not list((project / ".sweeper").glob("executions/*/execution.json"))


def test_a_member_that_crashes_stops_the_others(tmp_path: Path, ray_head: str) -> None:
    """Member 1 exits 3 while member 0 waits for it: member 0 is stopped, and its record,
    the summary and the exit code say member 1 failed first and why."""
    project = write_project(tmp_path / "p")
    proc = sweep_cli(
        "sweep", "rendezvous", "--task", "pair", "--runtime", "local", "-p", "crash_member=1",
        "--address", ray_head, "--json", cwd=project, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["status"] == "failed"
    failed = summary["first_failure"]
    assert (failed["member_id"], failed["error"]) == ("1", "exit code 3")
    first, second = _records(project, summary)
    assert (first.status, second.status) == ("stopped", "error")
    assert first.error == f"stopped: member 1 (execution {second.id}) failed first: exit code 3"


def test_a_distributed_task_node_of_a_pipeline_runs_as_a_group(
    tmp_path: Path, ray_head: str
) -> None:
    """A pipeline's task node of the distributed task starts its members together (they
    could not exchange messages otherwise) and its metadata flows on to the next node."""
    project = write_project(tmp_path / "p")
    proc = sweep_cli(
        "pipeline", "run", "group-then-report", "--runtime", "local",
        "--address", ray_head, "--json", cwd=project, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    nodes = json.loads(proc.stdout)["nodes"]
    assert nodes["members"]["status"] == nodes["report"]["status"] == "complete"
    store = Store.open(project / ".sweeper")
    records = [store.get_record(i) for i in nodes["members"]["execution_ids"]]
    assert sorted(r.metrics["received"] for r in records if r is not None) == [
        "hello from member 0",
        "hello from member 1",
    ]
    assert len({r.group_id for r in records if r is not None}) == 1
