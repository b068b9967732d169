"""Executions: the immutable spec of one run, running it, and the record it leaves.

``build_spec`` resolves a step, its parameter values and input URIs into an
:class:`ExecutionSpec`; ``Executor.run`` runs a spec with a runtime and stores the
:class:`ExecutionRecord` it leaves. Nothing here imports Ray: the Ray actor in
:mod:`sweeper.cluster` is a thin wrapper around :class:`Executor`.
"""

from sweeper.execution.ids import new_execution_id
from sweeper.execution.metrics import MetricsCollector, parse_metric_line
from sweeper.execution.record import ExecutionRecord, MetricEvent
from sweeper.execution.runner import Executor
from sweeper.execution.spec import ExecutionSpec, build_spec
from sweeper.status import Status

__all__ = [
    "ExecutionRecord",
    "ExecutionSpec",
    "Executor",
    "MetricEvent",
    "MetricsCollector",
    "build_spec",
    "Status",
    "new_execution_id",
    "parse_metric_line",
]
