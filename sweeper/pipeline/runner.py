"""Running a pipeline run: its plan, the policy that decides it, the controller that runs it.

:func:`run_plan` hands a :class:`~sweeper.pipeline.plan.PipelinePlan` to the one
:class:`~sweeper.cluster.controller.Controller` with a
:class:`~sweeper.pipeline.policy.PipelinePolicy` that decides it: which node is ready, what
its edges give it, what its ``on-error`` and ``actions`` say. Each execution runs on a Ray
actor that holds its step's CPUs and GPUs, so independent nodes (and the variants of a task
node) run concurrently as far as the cluster allows. A pipeline with deployment nodes runs
on the Ray they deploy to (:mod:`sweeper.pipeline.deploying`). :func:`resume_plan` plans a
saved run again, with the options and code it was started with.
"""

from __future__ import annotations

from collections.abc import Callable

from sweeper.cluster.controller import Controller
from sweeper.deploy.place import join
from sweeper.pipeline.deploy_policy import DeployingPolicy
from sweeper.pipeline.deploying import deployment_place
from sweeper.pipeline.plan import PipelinePlan
from sweeper.pipeline.policy import PipelinePolicy
from sweeper.pipeline.result import PipelineResult
from sweeper.pipeline.state import PipelineState
from sweeper.store import RecordStore


def run_plan(
    plan: PipelinePlan, store: RecordStore, *, on_event: Callable[[str], None] | None = None
) -> PipelineResult:
    """Run every node of ``plan`` to its end (nothing for a resumed run that completed).

    ``on_event`` sees a line per node start, execution end and node end. Raises
    :class:`~sweeper.pipeline.graph.PipelineError` (after recording the run as ``error``)
    when an edge cannot be resolved at run time, e.g. a metadata key the source never printed.
    """
    options = plan.options
    place = deployment_place(plan.graph, options.address)
    policy = (
        PipelinePolicy(plan, store, on_event=on_event)
        if place is None
        else DeployingPolicy(plan, store, place, on_event=on_event)
    )
    if not policy.finished:
        if place is not None:
            join(place)
            if on_event is not None:
                on_event(f"deploying on {place.describe()}")
        controller = Controller(
            store,
            address=place.address if place else options.address,
            runtime=options.runtime,
            fresh_actors=options.fresh_actors,
        )
        controller.run(policy)
    if policy.failure is not None:
        raise policy.failure
    return policy.result()


def resume_plan(store: RecordStore, run_id: str, *, address: str | None = None) -> PipelinePlan:
    """The plan that continues run ``run_id`` as it was started (``address`` moves it)."""
    source = PipelineState.load(store, run_id).source
    return PipelinePlan.build(source.on(address), run_id=run_id, resuming=True)
