"""Pipelines: valohai.yaml nodes and edges run as a DAG on Ray.

:class:`PipelineGraph` checks a pipeline and resolves what flows along its edges;
:class:`PipelineRunner` runs (or resumes) a pipeline run on the one
:class:`~sweeper.cluster.controller.Controller`, with a :class:`PipelinePolicy` deciding
which node runs and what its end means; :class:`PipelineState` is the
run's durable record in the store (``pipelines/<run_id>/run.json`` and ``pipeline_runs``).
"""

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
