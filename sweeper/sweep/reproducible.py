"""Reproducible sweeps: what the sampler sees depends on the seed and the results only, and
each trial has a seed of its own (``VH_SEED``).

With several trials in flight, which one finishes first decides what Optuna has been told
when it asks the next one, so a seeded sweep at ``--parallel 3`` proposes different
parameters on a busy machine than on an idle one (optuna/optuna#3056). In the reproducible
mode a sweep keeps two rules, whatever the timing:

- results are told to the study in the order the trials were asked (a result that comes
  early is held until those asked before it are told);
- trial ``k`` is asked right after trial ``k - parallel`` is told, before anything else is
  told: the study it is asked of holds exactly the trials asked before it, those up to
  ``k - parallel`` finished, the rest running.

So the parameters of every trial are a function of the seed and of earlier trials' results.
The price is idle slots: a slot whose trial ended early waits until the trials asked before
it are told (the benchmark's ``reproducible`` row measures it).

Pruners see the same window (:class:`WindowedPruner`): a trial is judged against the trials
told before it was asked, never against whichever happened to finish meanwhile.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

import optuna

from sweeper.cluster.controller import Launch
from sweeper.execution.runner import ExecutionContext
from sweeper.record import ExecutionRecord
from sweeper.sweep.plan import SweepPlan
from sweeper.sweep.samplers import make_sampler

#: The variable each trial's step gets: a seed of its own, derived from the sweep's seed (or,
#: without one, the sweep's id) and the trial's number. See :func:`trial_seed`.
SEED_ENV = "VH_SEED"

#: The user attribute of a trial: the number of the first trial not yet told when it was
#: asked. Every trial numbered below it was told; what a pruner may compare it with.
TOLD_BELOW_ATTR = "told_below"


def trial_seed(sweep_seed: int | str, trial_number: int) -> int:
    """A seed for one trial: the first 4 bytes of sha256(``"<sweep seed>:<trial number>"``).

    Stable across runs, machines and Python versions (no ``hash()``), in ``[0, 2**32)`` so
    that ``numpy.random.seed`` takes it as it is.
    """
    digest = hashlib.sha256(f"{sweep_seed}:{trial_number}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


#: Samplers seeded afresh for each trial in the reproducible mode (from the sweep's seed and
#: the trial's number): their random state is not saved with the study, so a resumed driver
#: would otherwise draw differently. Grid and QMC follow the trial number already.
RESEEDED_SAMPLERS = frozenset({"tpe", "random", "cmaes", "gp", "nsga2"})


def trial_launch(plan: SweepPlan, trial: optuna.Trial) -> Launch:
    """The launch of ``trial``: its spec, with its own :data:`SEED_ENV`, and where it belongs."""
    spec = plan.template.build({**plan.space.fixed, **trial.params})
    if SEED_ENV not in spec.environment:  # a value the user gave wins
        seed = trial_seed(plan.seed if plan.seed is not None else plan.sweep_id, trial.number)
        spec = replace(spec, environment={**spec.environment, SEED_ENV: str(seed)})
    return Launch(
        key=trial,
        spec=spec,
        context=ExecutionContext(
            sweep_id=plan.sweep_id,
            trial_number=trial.number,
            attempt=int(trial.user_attrs.get("attempt", 1)),
        ),
        reuse=plan.reuse,
    )


def reseed(study: optuna.Study, plan: SweepPlan, number: int) -> None:
    """The study's sampler seeded for trial ``number`` (about to be asked) from the sweep's
    seed, so that a resumed driver asks as the one killed would have (reproducible mode)."""
    if plan.seed is None or plan.sampler not in RESEEDED_SAMPLERS:
        return
    study.sampler = make_sampler(
        plan.sampler,
        plan.space,
        seed=trial_seed(plan.seed, number),
        objectives=len(plan.metrics),
        previous=study.sampler,  # what it kept of the study's finished trials, not its seed
    )


@dataclass
class InOrder:
    """The trials asked and not yet told, in the order they were asked, and results held.

    :meth:`add` when a trial is asked, :meth:`hold` when its result comes, :meth:`release`
    for the results that may be told now (the oldest ones, in order, one at a time so that
    the next trial is asked between two tells).
    """

    window: int
    _asked: list[Hashable] = field(default_factory=list)
    _held: dict[Hashable, ExecutionRecord] = field(default_factory=dict)

    def add(self, key: Hashable) -> None:
        """A trial was asked: its result will be told after those asked before it."""
        self._asked.append(key)

    def hold(self, key: Hashable, record: ExecutionRecord) -> None:
        """A trial's result came: keep it until it is its turn."""
        self._held[key] = record

    def discard(self, keys: Sequence[Hashable]) -> None:
        """Trials asked that will never run (asked ahead, then the sweep ended)."""
        gone = set(keys)
        self._asked = [k for k in self._asked if k not in gone]

    def next_ready(self) -> tuple[Hashable, ExecutionRecord] | None:
        """The oldest trial's result, when it has come (it is told next); else None."""
        if self._asked and self._asked[0] in self._held:
            key = self._asked.pop(0)
            return key, self._held.pop(key)
        return None

    def has_room(self) -> bool:
        """Whether another trial may be asked: fewer than ``window`` asked and untold."""
        return len(self._asked) < self.window

    @property
    def untold(self) -> int:
        """Trials asked and not told (running, waiting to run, or held)."""
        return len(self._asked)

    @property
    def held(self) -> int:
        """Results come and not yet told: the trials neither running nor counted."""
        return len(self._held)

    def oldest(self) -> Hashable | None:
        """The oldest trial not told: every trial asked before it was told."""
        return self._asked[0] if self._asked else None

    def drain(self) -> list[tuple[Hashable, ExecutionRecord]]:
        """Every held result, oldest first (when the sweep ends: nothing more will be asked)."""
        order = [k for k in self._asked if k in self._held]
        out = [(k, self._held.pop(k)) for k in order]
        self._asked = [k for k in self._asked if k not in dict(out)]
        return out


class _TrialsBelow:
    """A study as a pruner sees it: only the trials numbered below ``limit``."""

    def __init__(self, study: optuna.Study, limit: int) -> None:
        self._study = study
        self._limit = limit

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[Any]:
        trials = self._study.get_trials(deepcopy=deepcopy, states=states)
        return [t for t in trials if t.number < self._limit]

    @property
    def trials(self) -> list[Any]:
        return self.get_trials()

    def __getattr__(self, name: str) -> Any:  # direction, directions, ...: the study's own
        return getattr(self._study, name)


class WindowedPruner(optuna.pruners.BasePruner):
    """A pruner that judges each trial against the trials told before it was asked.

    Median and successive halving read the study's trials through ``get_trials``; they see
    only those numbered below the trial's :data:`TOLD_BELOW_ATTR`. (Hyperband builds studies
    of its own from the storage and is not windowed: with it, a parallel sweep prunes by
    timing; the README says so.)
    """

    def __init__(self, inner: optuna.pruners.BasePruner) -> None:
        self.inner = inner

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        limit = trial.user_attrs.get(TOLD_BELOW_ATTR)
        if limit is None:
            return self.inner.prune(study, trial)
        return self.inner.prune(cast(optuna.Study, _TrialsBelow(study, int(limit))), trial)
