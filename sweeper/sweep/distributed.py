"""``sweep STEP --task NAME`` for a ``type: distributed`` task: one group, not a search.

Valohai runs a distributed task's ``execution-count`` executions together, with one parameter
set, as members that find each other through ``/valohai/config/distributed.json``. Here the
group is planned once (:func:`plan_group`), handed to the :class:`~sweeper.cluster.Controller`
as a :class:`GroupPolicy` whose launches all name the same
:class:`~sweeper.cluster.distributed.GroupSlot` (the controller places and starts them at
once, and stops the rest when one fails), and ends as one :class:`GroupResult`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeper.cluster.actors import ResourceShape
from sweeper.cluster.controller import Controller, ControllerView, Launch, Policy
from sweeper.cluster.distributed import GroupSlot
from sweeper.config import Config, Step, Task
from sweeper.errors import SweeperError
from sweeper.execution.ids import new_execution_id
from sweeper.execution.runner import ExecutionContext
from sweeper.execution.spec import ExecutionSpec
from sweeper.record import ExecutionRecord
from sweeper.status import Status
from sweeper.store import RecordStore
from sweeper.sweep.plan import SweepOptions, pin_options, spec_template


def is_distributed(config: Config, task: str | None) -> bool:
    """Whether ``task`` names a ``type: distributed`` task of ``config``."""
    return bool(task) and config.get_task(str(task)).type == "distributed"


@dataclass(frozen=True)
class GroupPlan:
    """A distributed task as it will run: ``size`` members of one spec, in group ``group_id``."""

    group_id: str
    task: str
    step: str
    size: int
    spec: ExecutionSpec
    options: SweepOptions


def group_parameters(step: Step, task: Task, specs: Mapping[str, Sequence[str]]) -> dict:
    """The one parameter set every member runs: defaults, the task's values, then ``-p``."""
    values = step.default_parameter_values()
    for variant in task.parameters:
        taken = variant.values()
        if len(taken) != 1:
            raise SweeperError(
                f'task "{task.name}" is distributed: its members run one parameter set, but '
                f'it gives parameter "{variant.name}" {len(taken)} values (give one)'
            )
        values[variant.name] = step.get_parameter(variant.name).validate(taken[0])
    values.update(step.parse_parameter_values(specs))
    return values


def plan_group(
    options: SweepOptions,
    *,
    config: Config,
    project_dir: Path,
    code_version: str,
    code_archive: str | None,
    store: RecordStore,
) -> GroupPlan:
    """Check ``options`` for a distributed task; the plan, or a :class:`SweeperError`.

    A ``dataset://NAME/latest`` input is pinned here, so every member reads one version.
    """
    step = config.get_step(options.step)
    task = config.get_task(str(options.task))
    if task.step != step.name:
        raise SweeperError(f'task "{task.name}" is for step "{task.step}", not "{step.name}"')
    options = pin_options(options, step, project_dir, store)
    template = spec_template(options, step, project_dir, code_version, code_archive)
    parameters = group_parameters(step, task, options.specs)
    return GroupPlan(
        group_id=f"task-{new_execution_id()}",
        task=task.name,
        step=step.name,
        size=int(task.execution_count or 1),
        spec=template.build(parameters),
        options=options,
    )


@dataclass(frozen=True)
class GroupResult:
    """How a distributed group ended: every member's record, and who failed first.

    ``status`` is ``complete`` when every member completed, else ``failed``;
    ``first_failure`` is the member that failed first (None when none did).
    """

    group_id: str
    task: str
    step: str
    status: Status
    members: tuple[ExecutionRecord, ...]
    first_failure: ExecutionRecord | None

    def to_dict(self) -> dict[str, Any]:
        """The summary ``sweep STEP --task NAME --json`` prints."""
        failed = self.first_failure
        return {
            "group_id": self.group_id,
            "task": self.task,
            "step": self.step,
            "status": self.status.value,
            "members": [
                {
                    "member_id": r.member_id,
                    "execution_id": r.id,
                    "status": r.status.value,
                    "error": r.error,
                    "ray_node": r.ray_node,
                    "metrics": dict(r.metrics),
                }
                for r in self.members
            ],
            "first_failure": None
            if failed is None
            else {"member_id": failed.member_id, "execution_id": failed.id, "error": failed.error},
        }


class GroupPolicy(Policy):
    """Asks for every member of one group at once; keeps each member's record."""

    def __init__(self, plan: GroupPlan) -> None:
        self.plan = plan
        self.records: dict[int, ExecutionRecord] = {}
        self.first_failure: ExecutionRecord | None = None
        self._asked = False

    def shapes(self) -> Sequence[ResourceShape]:
        """The one shape every member has."""
        return [ResourceShape.of(self.plan.spec)]

    def ask(self, view: ControllerView, free: int) -> list[Launch]:
        """All members, once (the controller holds them until the whole group is placed)."""
        if self._asked:
            return []
        self._asked = True
        return [
            Launch(
                key=index,
                spec=self.plan.spec,
                context=ExecutionContext(),
                group=GroupSlot(self.plan.group_id, self.plan.size, index),
            )
            for index in range(self.plan.size)
        ]

    def exhausted(self) -> bool:
        """Once the members are asked for."""
        return self._asked

    def on_result(self, view: ControllerView, key: Hashable, record: ExecutionRecord) -> None:
        """Keep the record; the first that failed (not merely stopped) is the group's cause."""
        self.records[int(str(key))] = record
        if record.status not in (Status.COMPLETE, Status.STOPPED) and self.first_failure is None:
            self.first_failure = record

    def result(self) -> GroupResult:
        """The group's result, members in member-id order."""
        members = tuple(self.records[i] for i in sorted(self.records))
        complete = len(members) == self.plan.size and all(
            r.status is Status.COMPLETE for r in members
        )
        failure = self.first_failure or next(
            (r for r in members if r.status is not Status.COMPLETE), None
        )
        return GroupResult(
            group_id=self.plan.group_id,
            task=self.plan.task,
            step=self.plan.step,
            status=Status.COMPLETE if complete else Status.FAILED,
            members=members,
            first_failure=failure,
        )


def run_group(plan: GroupPlan, store: RecordStore) -> GroupResult:
    """Run the group on the cluster of ``plan.options.address`` (an embedded Ray by default)."""
    policy = GroupPolicy(plan)
    controller = Controller(store, address=plan.options.address, runtime=plan.options.runtime)
    controller.run(policy)
    return policy.result()
