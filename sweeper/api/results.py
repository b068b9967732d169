"""The typed results the API returns: a sweep's and a pipeline's (``to_dict()`` for ``--json``).

Each is defined on its own floor, beside what builds it, and re-exported here: a sweep's
(:class:`SweepResult`, its :class:`TrialSummary` and :class:`WarmStart`) in
:mod:`sweeper.sweep.result`, a pipeline's (:class:`NodeResult`, :class:`PipelineResult`) in
:mod:`sweeper.pipeline.result`.
"""

from __future__ import annotations

from sweeper.pipeline.result import NodeResult, PipelineResult
from sweeper.sweep.result import SweepResult, TrialSummary, WarmStart

__all__ = ["NodeResult", "PipelineResult", "SweepResult", "TrialSummary", "WarmStart"]
