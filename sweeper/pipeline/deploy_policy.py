"""The policy of a pipeline with deployment nodes: :class:`PipelinePolicy` plus their deploys.

A deployment node's version is made in a worker thread (:class:`DeploymentNodes`, which
says why); this policy starts it when the node is ready, tells its end on the next turn of
the controller's loop as a node end (a ``ready`` version completes the node, anything else
fails it and its ``on-error`` and ``node-error`` actions decide the rest, as for an
execution node), and waits for a deploy only when no execution is in flight: the loop ends
the run once nothing is in flight, and a deploy is not in its flight.
"""

from __future__ import annotations

from collections.abc import Callable

from sweeper.cluster.controller import ControllerView, Launch
from sweeper.deploy.place import Place
from sweeper.pipeline.deploying import DeploymentNodes
from sweeper.pipeline.graph import NodeOutcome, PipelineError
from sweeper.pipeline.plan import PipelinePlan
from sweeper.pipeline.policy import PipelinePolicy
from sweeper.status import Status
from sweeper.store import RecordStore


class DeployingPolicy(PipelinePolicy):
    """:class:`PipelinePolicy` for a pipeline with deployment nodes, deploying on ``place``."""

    def __init__(
        self,
        plan: PipelinePlan,
        store: RecordStore,
        place: Place,
        *,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(plan, store, on_event=on_event)
        self._deployments = DeploymentNodes(plan, store, place)

    def start(self, view: ControllerView) -> None:
        """As :meth:`PipelinePolicy.start`; a resumed run's complete deployment node whose
        version is no longer ready deploys again."""
        if self.plan.resuming:
            self._deployments.settle(self.state)
        super().start(view)

    def ask(self, view: ControllerView, free: int) -> list[Launch]:
        """Tell the deploys that ended, then start what is ready (a deploy among them)."""
        while True:
            self._take_deployed()
            launches = super().ask(view, free)
            if launches or view.in_flight or not self._deployments.busy or self._halted:
                return launches
            # only a deploy is under way: without it the loop would end the run now
            self._take_deployed(wait=True)

    def end(self, view: ControllerView, status: Status) -> Status:
        """As :meth:`PipelinePolicy.end`, once every deploy under way has ended."""
        self._take_deployed(close=True)  # a version is never left starting
        return super().end(view, status)

    def _start_deployment(self, name: str) -> None:
        """Begin a deployment node's version with the endpoint files its edges give."""
        self._note(f"node {name}: starting (a version of {self.graph.plans[name].node.deployment})")
        if self._act(name, "node-starting", {}, {}):
            return
        outcomes = {p: self._outcome(p) for p in self.graph.predecessors(name)}
        try:
            self._deployments.start(name, outcomes)
        except PipelineError as exc:  # as an execution node's edge: the run stops
            self.failure = self.failure or exc
            self._finish_node(name, Status.ERROR, str(exc))
            self._halt(Status.ERROR, str(exc))

    def _take_deployed(self, *, wait: bool = False, close: bool = False) -> None:
        """Deploys that ended: a ready version completes its node, else the node fails."""
        for ended in self._deployments.finished(wait=wait, close=close):
            node = self.state.nodes[ended.node]
            ended.record_on(node)
            self._event(ended.describe())
            if node.status != Status.RUNNING:  # the run stopped meanwhile: kept as made
                self._save()
                continue
            reason = ended.reason
            self._finish_node(ended.node, Status.ERROR if reason else Status.COMPLETE, reason)
            if self._halted is not None:
                continue
            if reason is None:
                self._act(ended.node, "node-complete", {}, {})
            else:
                self._after_error(ended.node, reason, {}, {})

    def _outcome(self, name: str) -> NodeOutcome:
        node = self.state.nodes[name]
        if node.type == "deployment":
            return self._deployments.outcome(node)
        return super()._outcome(name)


__all__ = ["DeployingPolicy"]
