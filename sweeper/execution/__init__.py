"""Executions: the immutable spec of one run, running it, and the record it leaves.

``build_spec`` resolves a step, its parameter values and input URIs into an
:class:`ExecutionSpec`; ``Executor.execute`` runs a spec with a runtime and writes the
record to a store. Nothing here imports Ray: the Ray actor in :mod:`sweeper.cluster` is a
thin wrapper around :class:`Executor`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sweeper._lazy import lazy_attributes

if TYPE_CHECKING:
    from sweeper.execution.ids import new_execution_id
    from sweeper.execution.metrics import MetricsCollector, parse_metric_line
    from sweeper.execution.runner import Executor
    from sweeper.execution.spec import ExecutionSpec, build_spec

__all__ = [
    "ExecutionSpec",
    "Executor",
    "MetricsCollector",
    "build_spec",
    "new_execution_id",
    "parse_metric_line",
]

# Imported on first use: `sweep lint` reaches execution.spec, not the runner and its runtimes.
__getattr__ = lazy_attributes(
    __name__,
    {
        "ExecutionSpec": "sweeper.execution.spec",
        "Executor": "sweeper.execution.runner",
        "MetricsCollector": "sweeper.execution.metrics",
        "build_spec": "sweeper.execution.spec",
        "new_execution_id": "sweeper.execution.ids",
        "parse_metric_line": "sweeper.execution.metrics",
    },
)
