"""Executions: the immutable spec of one run, running it, and the record it leaves.

``build_spec`` resolves a step, its parameter values and input URIs into an
:class:`ExecutionSpec`; ``Executor.run`` runs a spec with a runtime and stores the
:class:`ExecutionRecord` it leaves. Nothing here imports Ray: the Ray actor in
:mod:`sweeper.cluster` is a thin wrapper around :class:`Executor`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sweeper._lazy import lazy_attributes

if TYPE_CHECKING:
    from sweeper.execution.ids import new_execution_id
    from sweeper.execution.metrics import MetricsCollector, parse_metric_line
    from sweeper.execution.runner import Executor
    from sweeper.execution.spec import ExecutionSpec, SpecTemplate, build_spec
    from sweeper.record import ExecutionRecord, MetricEvent
    from sweeper.status import Status

__all__ = [
    "ExecutionRecord",
    "ExecutionSpec",
    "Executor",
    "MetricEvent",
    "MetricsCollector",
    "SpecTemplate",
    "build_spec",
    "Status",
    "new_execution_id",
    "parse_metric_line",
]

# Imported on first use: `sweep lint` reaches execution.spec, not the runner and its runtimes.
__getattr__ = lazy_attributes(
    __name__,
    {
        "ExecutionRecord": "sweeper.record",
        "ExecutionSpec": "sweeper.execution.spec",
        "Executor": "sweeper.execution.runner",
        "MetricEvent": "sweeper.record",
        "MetricsCollector": "sweeper.execution.metrics",
        "SpecTemplate": "sweeper.execution.spec",
        "Status": "sweeper.status",
        "build_spec": "sweeper.execution.spec",
        "new_execution_id": "sweeper.execution.ids",
        "parse_metric_line": "sweeper.execution.metrics",
    },
)
