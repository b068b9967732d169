"""Distributed groups on Ray: every member placed at once, addressed, started, stopped together.

A ``type: distributed`` task's ``execution-count`` members must all run at the same time (they
wait for each other), so they are placed through one Ray placement group of one bundle per
member, each bundle the step's CPUs and GPUs: Ray reserves all of them or none. Strategy:
``SPREAD`` when several nodes can hold a bundle (each member on a node of its own while there
are nodes, as Valohai runs one member per machine; a soft rule, so a group larger than the
node count still fits), ``PACK`` on a one-node cluster. ``STRICT_SPREAD`` would refuse any
group larger than the number of nodes, which Valohai does not.

Before any member starts, each member's actor reserves a free port on its node and says its
node's address; the driver then gives every member the same member list in its
``distributed.json`` (:mod:`sweeper.execution.distributed`). A member that ends without
completing stops the others, whose records then say which member failed first and why.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from sweeper.cluster.actors import RemoteExecutionActor, ResourceShape, TrialHandle
from sweeper.cluster.connect import ClusterInfo
from sweeper.cluster.store_service import StoreAccess
from sweeper.errors import ClusterError
from sweeper.execution.distributed import GroupConfig, MemberAddress
from sweeper.execution.runner import planned_record, utc_now
from sweeper.record import ExecutionRecord, FailureKind
from sweeper.status import Status
from sweeper.store import RecordStore

#: How long a group may wait for its placement before the run fails (seconds; a busy cluster
#: frees resources, a cluster too small never does and fails at once).
WAIT_ENV = "SWEEPER_GROUP_WAIT_S"
DEFAULT_WAIT_S = 30.0
#: How long the driver waits for the members' actors to say their address.
ADDRESS_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class GroupSlot:
    """Which distributed group a launch is a member of: ``member`` of ``size`` in ``group_id``."""

    group_id: str
    size: int
    member: int
    #: A group that cannot be placed ends as failed member records, told to the policy (a
    #: pipeline's node fails alone); else :class:`ClusterError` is raised out of the run
    #: (``sweep STEP --task``: one error, nothing started, nothing recorded).
    fails_alone: bool = False


def bundles_per_node(cluster: ClusterInfo, shape: ResourceShape) -> list[int]:
    """How many members of ``shape`` each alive node could hold when idle."""
    counts = []
    for node in cluster.nodes:
        fits = [node.get("CPU", 0.0) / shape.cpus] if shape.cpus > 0 else []
        if shape.gpus > 0:
            fits.append(node.get("GPU", 0.0) / shape.gpus)
        counts.append(int(min(fits)) if fits else 1 << 20)
    return counts


def strategy(cluster: ClusterInfo, shape: ResourceShape) -> str:
    """``SPREAD`` when several nodes can hold a member, else ``PACK`` (see the module)."""
    return "SPREAD" if sum(1 for n in bundles_per_node(cluster, shape) if n) > 1 else "PACK"


def _needs(shape: ResourceShape, size: int) -> str:
    gpus = f" and {shape.gpus:g} GPUs" if shape.gpus else ""
    return f"{size} members of {shape.cpus:g} CPUs{gpus} each, all at once"


def _has(cluster: ClusterInfo) -> str:
    nodes = ", ".join(
        f"{n.get('CPU', 0):g} CPUs" + (f" {n.get('GPU', 0):g} GPUs" if n.get("GPU") else "")
        for n in cluster.nodes
    )
    return f"{len(cluster.nodes)} node(s) ({nodes or 'none'})"


def check_group_fits(cluster: ClusterInfo, shape: ResourceShape, size: int) -> None:
    """Fail at once when the cluster could never hold the whole group, even idle."""
    cluster.check_fits(shape.cpus, shape.gpus)
    if sum(bundles_per_node(cluster, shape)) < size:
        raise ClusterError(
            f"the distributed task needs {_needs(shape, size)}, but the cluster at "
            f"{cluster.address} has {_has(cluster)}, room for "
            f"{sum(bundles_per_node(cluster, shape))}: lower execution-count or the step's "
            "resources, or add nodes"
        )


def place_group(cluster: ClusterInfo, shape: ResourceShape, size: int, name: str) -> Any:
    """A ready placement group of ``size`` bundles of ``shape``; ClusterError when it cannot be
    placed within ``SWEEPER_GROUP_WAIT_S`` (nothing is left reserved then)."""
    check_group_fits(cluster, shape, size)
    bundle: dict[str, float] = {"CPU": shape.cpus}
    if shape.gpus:
        bundle["GPU"] = shape.gpus
    group = placement_group(
        [dict(bundle) for _ in range(size)], strategy=strategy(cluster, shape), name=name
    )
    wait_s = float(os.environ.get(WAIT_ENV) or DEFAULT_WAIT_S)
    if not group.wait(timeout_seconds=wait_s):
        remove_placement_group(group)
        free = ray.available_resources()
        raise ClusterError(
            f"the distributed task's {size} members could not all be placed within "
            f"{wait_s:g}s: it needs {_needs(shape, size)}; the cluster at {cluster.address} "
            f"has {_has(cluster)} with {free.get('CPU', 0):g} CPUs and {free.get('GPU', 0):g} "
            "GPUs free now (others' work holds the rest): wait for it to end, or lower "
            f"execution-count ({WAIT_ENV} sets the wait)"
        )
    return group


@dataclass
class _Group:
    """One placed group: its placement, its members' handles, and who failed first."""

    placement: Any
    handles: list[TrialHandle]
    running: set[Hashable] = field(default_factory=set)
    failure: str | None = None


class Groups:
    """The distributed groups of one controller run: buffered, placed, started, ended.

    The controller hands it every launch that names a :class:`GroupSlot` (:meth:`add`); once
    all members of a group are in, :meth:`start` places and starts them. Each member's end
    goes through :meth:`ended`; a group's actors and placement go when its last member ends.
    """

    def __init__(self) -> None:
        self._waiting: dict[str, list[Any]] = {}
        self._groups: dict[str, _Group] = {}
        self._unplaced: list[tuple[Any, str]] = []

    def add(self, launch: Any) -> list[Any]:
        """Buffer a member's launch; all of its group's launches once the last is in."""
        slot: GroupSlot = launch.group
        members = self._waiting.setdefault(slot.group_id, [])
        members.append(launch)
        if len(members) < slot.size:
            return []
        del self._waiting[slot.group_id]
        return sorted(members, key=lambda item: item.group.member)

    def start(
        self,
        launches: Sequence[Any],
        cluster: ClusterInfo,
        access: StoreAccess,
        runtime: str,
        specs: Sequence[Any],
    ) -> list[TrialHandle]:
        """Place the group, learn its members' addresses, start them all; their handles.

        ``specs`` are the launches' specs as the members' nodes see them (staged inputs).
        A group that cannot be placed raises :class:`ClusterError`, or, when its slot
        ``fails_alone``, is kept for :meth:`take_unplaced` (no handles).
        """
        slot: GroupSlot = launches[0].group
        shape = ResourceShape.of(launches[0].spec)
        try:
            group = place_group(cluster, shape, slot.size, slot.group_id)
        except ClusterError as exc:
            if not slot.fails_alone:
                raise
            self._unplaced += [
                (launch, f"the group could not be placed: {exc}") for launch in launches
            ]
            return []
        try:
            actors = [
                RemoteExecutionActor.options(
                    num_cpus=shape.cpus,
                    num_gpus=shape.gpus,
                    scheduling_strategy=PlacementGroupSchedulingStrategy(
                        placement_group=group, placement_group_bundle_index=index
                    ),
                ).remote(access, runtime)
                for index in range(len(launches))
            ]
            configs = _configs(slot.group_id, launches, actors)
        except BaseException:
            remove_placement_group(group)
            raise
        handles = []
        for launch, spec, actor, config in zip(launches, specs, actors, configs, strict=True):
            context = replace(launch.context, distributed=config)
            ref = actor.run.remote(spec, launch.execution_id, context, launch.reuse)
            handles.append(
                TrialHandle(launch.key, launch.execution_id, spec, context, actor, shape, ref)
            )
        self._groups[slot.group_id] = _Group(group, handles, {h.key for h in handles})
        return handles

    def take_unplaced(
        self, store: RecordStore, *, with_image: bool
    ) -> list[tuple[Hashable, ExecutionRecord]]:
        """The members of groups that could not be placed, each recorded as failed (an
        ``infrastructure`` error saying why), by launch key; each is given once."""
        taken, self._unplaced = self._unplaced, []
        ended = []
        for launch, reason in taken:
            planned = planned_record(
                launch.spec, launch.execution_id, launch.context, with_image=with_image
            )
            record = planned.finished(
                Status.ERROR,
                error=reason,
                failure_kind=FailureKind.INFRASTRUCTURE,
                ended_at=utc_now(),
                counter=store.allocate_counter(),
            )
            store.put_record(record)
            ended.append((launch.key, record))
        return ended

    def owns(self, handle: TrialHandle) -> bool:
        """Whether ``handle`` is a group member's (its actor is not the pool's)."""
        return any(handle in group.handles for group in self._groups.values())

    def ended(self, handle: TrialHandle, record: ExecutionRecord) -> None:
        """A member ended: the first to fail stops the rest; the last frees the group."""
        for group_id, group in list(self._groups.items()):
            if handle not in group.handles:
                continue
            group.running.discard(handle.key)
            if record.status is not Status.COMPLETE and group.failure is None:
                group.failure = (
                    f"stopped: member {record.member_id} (execution {record.id}) failed first: "
                    f"{record.error or record.status}"
                )
            self.tick()
            if not group.running:
                self._free(group_id)

    def tick(self) -> None:
        """Stop again the running members of failed groups (a stop sent before a member's
        run began is lost)."""
        for group in self._groups.values():
            if group.failure is None:
                continue
            for member in group.handles:
                if member.key in group.running:
                    member.stopping = True
                    member.actor.stop.remote(Status.STOPPED, group.failure)

    def _free(self, group_id: str) -> None:
        group = self._groups.pop(group_id)
        for member in group.handles:
            try:
                ray.kill(member.actor)
            except Exception:  # already dead: nothing to free
                pass
        remove_placement_group(group.placement)

    def close(self) -> None:
        """Free every group still held (the run ended or was interrupted)."""
        for group_id in list(self._groups):
            self._free(group_id)
        self._waiting.clear()


def _configs(group_id: str, launches: Sequence[Any], actors: Sequence[Any]) -> list[dict]:
    """Each member's ``distributed.json``, from the address and port each actor reserved."""
    refs = [actor.reserve_port.remote() for actor in actors]
    try:
        addresses = ray.get(refs, timeout=ADDRESS_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:
        raise ClusterError(
            f"the members of group {group_id} were placed but their processes did not start "
            f"within {ADDRESS_TIMEOUT_S:g}s"
        ) from None
    members = tuple(
        MemberAddress(
            member_id=str(launch.group.member),
            job_id=launch.execution_id,
            identity=host,
            local_ips=(ip,),
            ports=(port,),
            announce_time=utc_now(),
        )
        for launch, (ip, port, host) in zip(launches, addresses, strict=True)
    )
    config = GroupConfig(group_name=group_id, members=members)
    return [config.member_config(member.member_id) for member in members]
