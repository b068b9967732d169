"""Sweeps: Optuna suggests, Ray actors run executions, the store keeps every trial."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sweeper._lazy import lazy_attributes

if TYPE_CHECKING:
    from sweeper.sweep.engine import Progress, SweepOptions, SweepRunner
    from sweeper.sweep.space import SearchSpace, resolve_space
    from sweeper.sweep.state import summarize

__all__ = ["Progress", "SearchSpace", "SweepOptions", "SweepRunner", "resolve_space", "summarize"]

# Imported on first use: the engine imports Ray and Optuna, which `sweep status` and the
# commands that never sweep should not pay for.
__getattr__ = lazy_attributes(
    __name__,
    {
        "Progress": "sweeper.sweep.engine",
        "SearchSpace": "sweeper.sweep.space",
        "SweepOptions": "sweeper.sweep.engine",
        "SweepRunner": "sweeper.sweep.engine",
        "resolve_space": "sweeper.sweep.space",
        "summarize": "sweeper.sweep.state",
    },
)
