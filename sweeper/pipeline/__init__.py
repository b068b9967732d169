"""Pipelines: valohai.yaml nodes and edges run as a DAG on Ray.

:class:`PipelineGraph` checks a pipeline and resolves what flows along its edges;
:class:`PipelineRunner` runs (or resumes) a pipeline run on the one
:class:`~sweeper.cluster.controller.Controller`, with a :class:`PipelinePolicy` deciding
which node runs and what its end means; :class:`PipelineState` is the run's durable record
in the store (``pipelines/<run_id>/run.json`` and ``pipeline_runs``). Names are imported on
first use, so that reading a run's state (``sweep pipeline ls/show``) does not load Ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sweeper._lazy import lazy_attributes

if TYPE_CHECKING:
    from sweeper.pipeline.graph import PipelineError, PipelineGraph
    from sweeper.pipeline.policy import PipelinePolicy
    from sweeper.pipeline.runner import PipelineOptions, PipelineRunner
    from sweeper.pipeline.state import PipelineState, latest_runs

__all__ = [
    "PipelineError",
    "PipelineGraph",
    "PipelineOptions",
    "PipelinePolicy",
    "PipelineRunner",
    "PipelineState",
    "latest_runs",
]

__getattr__ = lazy_attributes(
    __name__,
    {
        "PipelineError": "sweeper.pipeline.graph",
        "PipelineGraph": "sweeper.pipeline.graph",
        "PipelinePolicy": "sweeper.pipeline.policy",
        "PipelineOptions": "sweeper.pipeline.runner",
        "PipelineRunner": "sweeper.pipeline.runner",
        "PipelineState": "sweeper.pipeline.state",
        "latest_runs": "sweeper.pipeline.state",
    },
)
