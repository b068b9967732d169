"""Sweeps: Optuna suggests, Ray actors run executions, the store keeps every trial.

:func:`plan_sweep` turns :class:`SweepOptions` into a frozen :class:`SweepPlan`; :func:`run_plan`
runs it and returns a :class:`SweepResult`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sweeper._lazy import lazy_attributes

if TYPE_CHECKING:
    from sweeper.sweep.engine import run_plan
    from sweeper.sweep.plan import SweepOptions, SweepPlan, plan_sweep
    from sweeper.sweep.policy import Progress
    from sweeper.sweep.result import SweepResult
    from sweeper.sweep.space import SearchSpace, resolve_space
    from sweeper.sweep.state import sweep_result

__all__ = [
    "Progress",
    "SearchSpace",
    "SweepOptions",
    "SweepPlan",
    "SweepResult",
    "plan_sweep",
    "resolve_space",
    "run_plan",
    "sweep_result",
]

# Imported on first use: the engine imports Ray and Optuna, which `sweep status` and the
# commands that never sweep should not pay for.
__getattr__ = lazy_attributes(
    __name__,
    {
        "Progress": "sweeper.sweep.policy",
        "SearchSpace": "sweeper.sweep.space",
        "SweepOptions": "sweeper.sweep.plan",
        "SweepPlan": "sweeper.sweep.plan",
        "SweepResult": "sweeper.sweep.result",
        "plan_sweep": "sweeper.sweep.plan",
        "resolve_space": "sweeper.sweep.space",
        "run_plan": "sweeper.sweep.engine",
        "sweep_result": "sweeper.sweep.state",
    },
)
