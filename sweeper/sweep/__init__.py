"""Sweeps: Optuna suggests, Ray actors run executions, the store keeps every trial."""

from sweeper.sweep.engine import Progress, SweepOptions, SweepRunner, summarize
from sweeper.sweep.space import SearchSpace, resolve_space

__all__ = ["Progress", "SearchSpace", "SweepOptions", "SweepRunner", "resolve_space", "summarize"]
