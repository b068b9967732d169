"""The Python API: what the ``sweep`` commands do, as functions that return records.

``sweeper.run("train")`` runs one execution of a step and returns its
:class:`~sweeper.record.ExecutionRecord`, the same record ``sweep run --json``
prints; ``sweeper.rerun(execution_id)`` runs a recorded execution again as it ran.
``sweeper.run_sweep("train", trials=20, ...)`` sweeps a step on Ray and returns a frozen
:class:`SweepResult` (``.to_dict()`` is the ``sweep --json`` summary); ``resume_sweep``
continues a killed one. ``sweeper.run_pipeline("train-pipeline")`` runs a pipeline and
returns a frozen :class:`PipelineResult`; ``resume_pipeline`` continues a killed run. The
commands are thin wrappers over these functions, so both behave the same.
"""

from __future__ import annotations

from sweeper.api.pipeline import pipeline_run_id, resume_pipeline, run_pipeline
from sweeper.api.results import NodeResult, PipelineResult, SweepResult, TrialSummary
from sweeper.api.run import rerun, run
from sweeper.api.sweep import is_distributed_task, resume_sweep, run_group, run_sweep

__all__ = [
    "NodeResult",
    "PipelineResult",
    "SweepResult",
    "TrialSummary",
    "is_distributed_task",
    "pipeline_run_id",
    "rerun",
    "resume_pipeline",
    "resume_sweep",
    "run",
    "run_group",
    "run_pipeline",
    "run_sweep",
]
