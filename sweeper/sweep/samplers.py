"""Optuna samplers and pruners by the names the CLI accepts."""

from __future__ import annotations

from typing import Any

import optuna

from sweeper.errors import SweeperError
from sweeper.sweep.choices import PRUNERS, SAMPLERS
from sweeper.sweep.space import SearchSpace
from sweeper.sweep.tpe import SweepTPESampler

# Optuna's INFO lines ("A new study created...") are not sweeper's output; set here too, not
# only in the engine, for the commands that use Optuna without it (`sweep replay`).
optuna.logging.set_verbosity(optuna.logging.WARNING)


class AskTellGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler for an ask/tell loop.

    ``GridSampler.after_trial`` calls ``study.stop()`` once the grid is exhausted, which
    only works inside ``study.optimize``; our loop stops by counting trials instead.
    """

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        """Nothing to do: the sweep loop knows the grid size."""


def make_sampler(
    name: str,
    space: SearchSpace,
    *,
    seed: int | None,
    objectives: int,
    previous: optuna.samplers.BaseSampler | None = None,
) -> optuna.samplers.BaseSampler:
    """Build the sampler ``name``; parallel TPE uses the constant liar to avoid duplicates.

    ``previous``: the sampler this one replaces (reseeded for a trial), whose kept trials
    TPE takes over (:class:`~sweeper.sweep.tpe.SweepTPESampler`, Optuna's suggestions).
    """
    name = name.lower()
    if name == "tpe":
        return _tpe(seed, previous)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return _grid(space, seed)
    if name == "cmaes":
        if objectives > 1:
            raise SweeperError(
                "the cmaes sampler cannot be used with several metrics: use nsga2 or tpe"
            )
        try:
            import cmaes  # noqa: F401  (Optuna imports it only when the first trial asks)
        except ImportError:
            raise SweeperError(
                "the cmaes sampler needs the cmaes package: pip install cmaes, or use tpe"
            ) from None
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "gp":
        try:
            import torch  # noqa: F401
        except ImportError:
            raise SweeperError(
                "the gp sampler needs PyTorch: pip install torch, or use tpe"
            ) from None
        return optuna.samplers.GPSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    raise SweeperError(f'unknown sampler "{name}"; choose one of {", ".join(SAMPLERS)}')


def _grid(space: SearchSpace, seed: int | None) -> AskTellGridSampler:
    grid: dict[str, list[Any]] = dict(space.grid or {})
    for pname, dist in space.distributions.items():
        choices = getattr(dist, "choices", None)
        if choices is None:
            raise SweeperError(
                f'the grid sampler needs a list of values for "{pname}", not a range: '
                f"give -p {pname}=a,b,c or use a grid_search task"
            )
        grid[pname] = list(choices)
    if not grid:
        raise SweeperError("the grid sampler needs at least one parameter with several values")
    return AskTellGridSampler(grid, seed=seed)


def _tpe(seed: int | None, previous: optuna.samplers.BaseSampler | None) -> SweepTPESampler:
    if isinstance(previous, SweepTPESampler):
        return previous.reseeded(seed)
    return SweepTPESampler(seed=seed, constant_liar=True, multivariate=True)


def make_pruner(name: str, *, objectives: int) -> optuna.pruners.BasePruner:
    """Build the pruner ``name`` (``none`` never prunes)."""
    name = name.lower()
    if name == "none":
        return optuna.pruners.NopPruner()
    if objectives > 1:
        raise SweeperError(
            f"the {name} pruner cannot be used with several metrics: use --pruner none"
        )
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner()
    raise SweeperError(f'unknown pruner "{name}"; choose one of {", ".join(PRUNERS)}')
