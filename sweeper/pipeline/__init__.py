"""Pipelines: valohai.yaml nodes and edges run as a DAG on Ray.

:class:`PipelineGraph` checks a pipeline and resolves what flows along its edges;
:class:`PipelinePlan` is a run decided before it starts (graph, values, spec templates);
:func:`run_plan` runs (or resumes) it on the one
:class:`~sweeper.cluster.controller.Controller`, with a :class:`PipelinePolicy` deciding
which node runs and what its end means; :class:`PipelineState` is the run's durable record
in the store (``pipelines/<run_id>/run.json`` and ``pipeline_runs``) and
:class:`PipelineResult` how it ended. Names are imported on first use, so that reading a
run's state (``sweep pipeline ls/show``) does not load Ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sweeper._lazy import lazy_attributes

if TYPE_CHECKING:
    from sweeper.pipeline.graph import PipelineError, PipelineGraph
    from sweeper.pipeline.plan import PipelineOptions, PipelinePlan, RunSource
    from sweeper.pipeline.policy import PipelinePolicy
    from sweeper.pipeline.result import NodeResult, PipelineResult
    from sweeper.pipeline.runner import resume_plan, run_plan
    from sweeper.pipeline.state import PipelineState, latest_runs

__all__ = [
    "NodeResult",
    "PipelineError",
    "PipelineGraph",
    "PipelineOptions",
    "PipelinePlan",
    "PipelinePolicy",
    "PipelineResult",
    "PipelineState",
    "RunSource",
    "latest_runs",
    "resume_plan",
    "run_plan",
]

__getattr__ = lazy_attributes(
    __name__,
    {
        "NodeResult": "sweeper.pipeline.result",
        "PipelineError": "sweeper.pipeline.graph",
        "PipelineGraph": "sweeper.pipeline.graph",
        "PipelineOptions": "sweeper.pipeline.plan",
        "PipelinePlan": "sweeper.pipeline.plan",
        "PipelinePolicy": "sweeper.pipeline.policy",
        "PipelineResult": "sweeper.pipeline.result",
        "PipelineState": "sweeper.pipeline.state",
        "RunSource": "sweeper.pipeline.plan",
        "latest_runs": "sweeper.pipeline.state",
        "resume_plan": "sweeper.pipeline.runner",
        "run_plan": "sweeper.pipeline.runner",
    },
)
