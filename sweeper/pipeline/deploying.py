"""Deployment nodes: each makes a version of its ``deployment`` on Ray Serve.

A node ``{type: deployment, deployment: staging, endpoints: [predict], aliases: [staging]}``
calls :func:`sweeper.deploy.service.deploy` (the entry point ``sweep deploy`` uses) with
the endpoint files its edges give (``[train.output.model*, d.file.predict.model]``: the
output of the upstream execution, pinned by sha256 as ``--file predict.model=EXEC_ID:OUTPUT``
is). A ``ready`` version completes the node (its aliases are moved then, by ``deploy``); a
``failed`` one, or a request ``deploy`` refuses, fails it, and its ``on-error`` decides the
rest as for an execution node. The node's state keeps the version's id, so ``pipeline
resume`` keeps a node whose version is still ready, as it keeps a complete execution, and
with ``--reuse`` (``reuse-executions``) a ready version of the same deployment with the
same code, endpoints and files is taken instead of a new one; without it, one made by the
same run is (a second node that deploys what the first did, with another alias, promotes
that version: an alias move, nothing restarted).

**Where.** A pipeline with deployment nodes runs, all of it, on a Ray that outlives the
command, by the rule of ``sweep deploy`` (:mod:`sweeper.deploy.place`): ``--address`` or
``RAY_ADDRESS``, else the head ``sweep up`` started. With neither the run is refused before
anything runs: an embedded Ray would take the endpoints with it when the command ends.

**How.** ``deploy`` returns once the version is ready or failed (seconds: replicas start,
the app imports). It runs in a worker thread, so the controller's loop goes on telling the
ends of executions meanwhile; one deploy at a time (a single worker), as versions are
numbered one at a time under a store lock anyway. The policy collects finished deploys on
each turn of the loop and waits for one only when nothing else is in flight (the loop would
otherwise end the run with a deploy under way).

**Defaults.** A node's ``deployment: NAME`` declared by a top-level ``deployment`` block
takes that block's ``defaults``: ``replicas`` (else 1) and ``runtime`` (else the run's
``--runtime``), as ``sweep deploy --deployment NAME`` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sweeper.config import Config, parse_config
from sweeper.config.endpoint import deployment_block, load_endpoints
from sweeper.deploy import DeployRequest, FileSource, VersionRecord, VersionStatus, service
from sweeper.deploy.files import pin_files
from sweeper.deploy.place import Place, find_place, join
from sweeper.errors import SweeperError
from sweeper.pipeline.graph import NodeOutcome, PipelineError, PipelineGraph, resolve_edges
from sweeper.pipeline.plan import PipelinePlan
from sweeper.pipeline.state import NodeState, PipelineState
from sweeper.status import Status
from sweeper.store import RecordStore, Store


def deployment_place(graph: PipelineGraph, address: str | None) -> Place | None:
    """The Ray a pipeline with deployment nodes runs on (None without any); a
    :class:`~sweeper.errors.ClusterError` saying what to do when there is none."""
    if not any(plan.step is None for plan in graph.plans.values()):
        return None
    return find_place(address)


def prepare(config: Config, pipeline: str, address: str | None) -> str | None:
    """The address pipeline ``pipeline`` runs on: ``address``, or for one with deployment
    nodes the place's, joined now (with Serve started).

    Called before anything imports Ray: a ``sweep up`` head's token is read at Ray's import.
    Raises the graph's own :class:`PipelineError` for a pipeline that cannot run.
    """
    place = deployment_place(PipelineGraph.build(config, pipeline), address)
    if place is None:
        return address
    join(place)
    return place.address


def prepare_resume(store: RecordStore, run_id: str, address: str | None) -> None:
    """:func:`prepare` for resuming run ``run_id`` (``address`` moves it), before Ray's import."""
    source = PipelineState.load(store, run_id).source.on(address)
    config = parse_config(source.config_text, filename=source.config_filename, strict=False)
    prepare(config, source.options.pipeline, source.options.address)


def version_values(record: VersionRecord) -> dict[str, str]:
    """What ``[d.deployment.KEY, ...]`` edges carry: ``id`` (the deployment's name),
    ``version_id``, ``version`` and ``url.ENDPOINT`` (the version's own URL)."""
    values = {"id": record.deployment, "version_id": record.version_id, "version": record.version}
    values.update({f"url.{name}": url for name, url in record.urls().items()})
    return values


@dataclass(frozen=True)
class Deployed:
    """A deployment node's deploy that ended: the version, or why there is none."""

    node: str
    record: VersionRecord | None
    error: str | None = None

    @property
    def reason(self) -> str | None:
        """Why the node failed; None when its version is ready."""
        if self.record is None:
            return self.error or "nothing was deployed"
        if self.record.status is VersionStatus.READY:
            return None
        record = self.record
        return f"version {record.version} of {record.deployment!r} failed: {record.reason}"

    def record_on(self, node: NodeState) -> None:
        """Keep the version in the node's state (what resume and the edges read)."""
        if self.record is not None:
            node.version_id = self.record.version_id

    def describe(self) -> str:
        """One line for the screen: the version and where it answers, or why it failed."""
        if self.record is None or self.reason is not None:
            return f"node {self.node}: nothing serves: {self.reason}"
        urls = " ".join(self.record.urls().values())
        return f"node {self.node}: version {self.record.version} of {self.record.deployment!r} ready at {urls}"


class DeploymentNodes:
    """The deployment nodes of one run: their deploys under way, and the versions they made."""

    def __init__(self, plan: PipelinePlan, store: RecordStore, place: Place | None) -> None:
        self._plan = plan
        self._store = store
        self._place = place
        self._executor: ThreadPoolExecutor | None = None
        self._running: dict[str, Future[VersionRecord]] = {}
        self._versions: dict[str, VersionRecord] = {}
        #: Nodes whose deploy was refused before it began, told by the next :meth:`finished`.
        self._refused: list[Deployed] = []

    @property
    def busy(self) -> bool:
        """Whether a deploy is under way (or refused and not yet told)."""
        return bool(self._running or self._refused)

    def start(self, name: str, outcomes: Mapping[str, NodeOutcome]) -> None:
        """Begin node ``name``'s deploy with the endpoint files the edges from ``outcomes``
        give; :class:`PipelineError` for an edge that cannot be resolved."""
        files = resolve_edges(self._plan.graph, name, outcomes).files
        try:
            store, place = self._real_store(), self._place
            if place is None:
                raise PipelineError("deployment nodes need a Ray that outlives the command")
            request = self._request(name, files, place)
        except SweeperError as exc:
            self._refused.append(Deployed(name, None, str(exc)))
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="sweeper-deploy")
        self._running[name] = self._executor.submit(
            _deploy, request, store, place, None if self._plan.reuse else self._plan.run_id
        )

    def finished(self, *, wait: bool = False, close: bool = False) -> list[Deployed]:
        """The deploys that ended: with ``wait`` at least one if any is under way, with
        ``close`` all of them (a version is never left ``starting``), the worker ended."""
        if (wait or close) and self._running and not self._refused:
            next(iter(self._running.values())).exception()
        ended, self._refused = self._refused, []
        for name, future in list(self._running.items()):
            if not future.done():
                continue
            del self._running[name]
            error = future.exception()
            if error is None:
                self._versions[name] = future.result()
                ended.append(Deployed(name, self._versions[name]))
            elif isinstance(error, SweeperError):
                ended.append(Deployed(name, None, str(error)))
            else:  # Ray or Serve failed under it: the node fails, the run goes on
                ended.append(Deployed(name, None, f"{type(error).__name__}: {error}"))
        if close and self._running:
            ended += self.finished(close=True)
        elif close and self._executor is not None:
            self._executor.shutdown()
            self._executor = None
        return ended

    def outcome(self, node: NodeState) -> NodeOutcome:
        """What a finished deployment node gives its edges (its version's values)."""
        record = self._versions.get(node.name) or self._stored(node)
        return NodeOutcome(deployment=version_values(record) if record else {})

    def settle(self, state: PipelineState) -> None:
        """On resume: a complete deployment node whose version is no longer ready deploys again."""
        for node in state.nodes.values():
            if node.type != "deployment" or node.status != Status.COMPLETE:
                continue
            record = self._stored(node)
            if record is None or record.status is not VersionStatus.READY:
                node.reset()
                node.version_id = None

    def _stored(self, node: NodeState) -> VersionRecord | None:
        if node.version_id is None or not isinstance(self._store, Store):
            return None
        deployment = str(self._plan.graph.plans[node.name].node.deployment)
        found = [
            r for r in service.versions(self._store, deployment) if r.version_id == node.version_id
        ]
        return found[0] if found else None

    def _real_store(self) -> Store:
        if not isinstance(self._store, Store):  # a driver always has one; a test may not
            raise PipelineError("deployment nodes need the store itself, not a forwarded one")
        return self._store

    def _request(self, name: str, files: Mapping[str, str], place: Place) -> DeployRequest:
        node = self._plan.graph.plans[name].node
        source = self._plan.source
        sources = []
        for target, text in files.items():
            endpoint, _, file = target.partition(".")
            sources.append(FileSource(endpoint, file, text))
        # the deployment's valohai.yaml block gives its replicas, and its runtime over the
        # run's (which is the executions'), as it gives them to `sweep deploy`
        block = deployment_block(source.config_text, str(node.deployment), source.config_filename)
        return DeployRequest(
            deployment=str(node.deployment),
            endpoints=tuple(node.endpoints),
            config_text=source.config_text,
            code_version=source.code_version,
            code_archive=source.code_archive or "",
            files=tuple(sources),
            aliases=tuple(node.aliases),
            replicas=(block and block.replicas) or 1,
            runtime=(block and block.runtime) or source.options.runtime,
            address=place.address,
            project_dir=Path(source.project_dir),
            creator={"kind": "pipeline", "pipeline_run_id": self._plan.run_id, "node": name},
        )


def _deploy(
    request: DeployRequest, store: Store, place: Place, run_id: str | None
) -> VersionRecord:
    """The version of ``request``: a ready twin made by pipeline run ``run_id`` (by any
    creator for None: ``--reuse``) with its aliases moved, else a new one."""
    found = _ready_twin(request, store, run_id)
    if found is None:
        return service.deploy(request, store, place=place)
    for alias in request.aliases:
        service.set_alias(store, found.deployment, alias, found.version, address=place.address)
    return found


def _ready_twin(request: DeployRequest, store: Store, run_id: str | None) -> VersionRecord | None:
    """A ready version of the deployment with the request's code, endpoints and file
    contents (made by pipeline run ``run_id`` unless None)."""
    catalog = load_endpoints(request.config_text)
    endpoints = tuple(catalog.get(name) for name in dict.fromkeys(request.endpoints))
    pinned = pin_files(endpoints, request.files, store, request.project_dir)
    wanted = ({(f.endpoint, f.name, f.sha256) for f in pinned}, set(request.endpoints))
    for record in reversed(service.versions(store, request.deployment)):
        have = (
            {(f.endpoint, f.name, f.sha256) for f in record.files},
            {e.name for e in record.endpoints},
        )
        if (
            record.status is VersionStatus.READY
            and run_id in (None, record.creator.get("pipeline_run_id"))
            and record.code_version == request.code_version
            and have == wanted
        ):
            return record
    return None


__all__ = [
    "Deployed",
    "DeploymentNodes",
    "deployment_place",
    "prepare",
    "prepare_resume",
    "version_values",
]
