""":class:`GroupPolicy` against a fake controller view (no Ray): it asks for every member of
one group at once and only once, and its result is the group's, whoever failed first."""

from __future__ import annotations

from pathlib import Path

from sweeper.cli.project import project_from
from sweeper.cluster.controller import Launch
from sweeper.cluster.distributed import GroupSlot
from sweeper.execution.runner import planned_record, utc_now
from sweeper.record import ExecutionRecord
from sweeper.status import Status
from sweeper.store import Store
from sweeper.sweep.distributed import GroupPlan, GroupPolicy, plan_group
from sweeper.sweep.plan import SweepOptions
from tests.cluster.distributed_project import write_project
from tests.sweep.test_policy import FakeView


def _plan(tmp_path: Path, count: int = 3) -> GroupPlan:
    project = write_project(tmp_path / "p", count=count)
    store = Store.open(str(project / ".sweeper"), create=True)
    return plan_group(
        SweepOptions(step="rendezvous", task="pair"),
        config=project_from(str(project / "valohai.yaml"), None).config,
        project_dir=project,
        code_version="v",
        code_archive=None,
        store=store,
    )


def _ended(launch: Launch, status: Status, error: str | None = None) -> ExecutionRecord:
    record = planned_record(launch.spec, launch.execution_id, launch.context, with_image=False)
    return record.finished(status, error=error, ended_at=utc_now())


def test_every_member_is_asked_at_once_and_once(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    policy, view = GroupPolicy(plan), FakeView()
    assert not policy.exhausted()
    launches = policy.ask(view, free=1)  # the whole group, whatever the free slots
    assert [launch.group for launch in launches] == [
        GroupSlot(plan.group_id, 3, i) for i in range(3)
    ]
    assert all(launch.spec is plan.spec for launch in launches)
    assert len({launch.execution_id for launch in launches}) == 3
    assert policy.exhausted() and policy.ask(view, free=10) == []


def test_the_first_member_that_failed_is_the_groups_failure(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    policy, view = GroupPolicy(plan), FakeView()
    first, second, third = policy.ask(view, free=3)
    crashed = _ended(second, Status.ERROR, "exit code 3")
    # reported out of order: the crash, then the members it stopped
    policy.on_result(view, second.key, crashed)
    policy.on_result(view, third.key, _ended(third, Status.STOPPED, "stopped: member 1"))
    policy.on_result(view, first.key, _ended(first, Status.ERROR, "later failure"))
    result = policy.result()
    assert result.status is Status.FAILED and result.first_failure is crashed
    assert [r.id for r in result.members] == [m.execution_id for m in (first, second, third)]
    assert result.to_dict()["first_failure"]["error"] == "exit code 3"


def test_a_group_completes_only_whole(tmp_path: Path) -> None:
    plan = _plan(tmp_path, count=2)
    policy, view = GroupPolicy(plan), FakeView()
    first, second = policy.ask(view, free=2)
    policy.on_result(view, first.key, _ended(first, Status.COMPLETE))
    partial = policy.result()  # a member that never reported: not complete
    assert partial.status is Status.FAILED and partial.first_failure is None
    policy.on_result(view, second.key, _ended(second, Status.COMPLETE))
    whole = policy.result()
    assert whole.status is Status.COMPLETE and whole.first_failure is None
    assert len(whole.members) == 2
