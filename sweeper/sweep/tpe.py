"""Optuna's TPE sampler with what it reads of finished trials kept between asks.

Optuna's :class:`~optuna.samplers.TPESampler` re-reads every trial of the study at every
ask: it splits them into the best (``below``) and the rest (``above``), checking each
one's constraints, sorting them all by value, and turns every trial's parameters into
numbers again. That is Python work per trial per ask: at 2,000 trials it was most of the
driver's time per trial, at 10,000 it would outlast the trials themselves.

A finished trial never changes (Optuna refuses any write to it), so what TPE derives from
it can be kept: :class:`FinishedTrials` holds, for each finished trial, how it ranks
(its value, its pruned score, its constraint violation) in sorted lists, and its
parameters as numbers in an array in trial-number order. An ask then only reads the
trials it has not seen finish and the running ones. The split, the order of the
observations and every number handed to Optuna's own Parzen estimators are exactly those
of ``TPESampler._sample``: same seed, same trials, same suggestions (the tests compare the
two). What is not the common case (several objectives, a custom ``gamma``) is left to
Optuna's own code.

In the reproducible mode a sweep seeds a new sampler for every trial;
:meth:`SweepTPESampler.reseeded` gives it what the sampler before it kept (the search space
and the finished trials of each study it sampled: functions of the study, not of the seed).
"""

from __future__ import annotations

import bisect
import math
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator
from optuna.samplers._tpe.sampler import default_gamma
from optuna.search_space import IntersectionSearchSpace
from optuna.storages import BaseStorage
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

#: The finished states TPE learns from.
LEARNED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass
class FinishedTrials:
    """What TPE reads of a study's finished (complete or pruned) trials, kept as they finish.

    ``numbers`` and ``rows`` are in trial-number order; ``rows`` holds each trial's
    parameters of ``space`` in Optuna's internal representation (NaN where a trial lacks
    one: ``usable`` says which rows are whole). The three ranked lists hold
    ``(key, number)`` pairs sorted as ``_split_trials`` sorts each group (a stable sort of
    trials in number order is a sort by ``(key, number)``).
    """

    space: dict[str, BaseDistribution]
    minimize: bool
    numbers: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    rows: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    usable: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))
    complete: list[tuple[float, int]] = field(default_factory=list)
    pruned: list[tuple[tuple[float, float], int]] = field(default_factory=list)
    infeasible: list[tuple[float, int]] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.rows = np.empty((0, len(self.space)))

    def add(self, trial: FrozenTrial, params: dict[str, Any]) -> None:
        """Keep a trial that finished (its ``params`` as TPE reads them)."""
        number = trial.number
        self.seen.add(number)
        violation = _violation(trial)
        if violation > 0:  # checked first, as _split_trials does
            bisect.insort(self.infeasible, (violation, number))
        elif trial.state == TrialState.COMPLETE:
            value = float(trial.values[0])
            bisect.insort(self.complete, (value if self.minimize else -value, number))
        else:
            bisect.insort(self.pruned, (_pruned_score(trial, self.minimize), number))
        at = int(np.searchsorted(self.numbers, number, side="right"))
        self.numbers = np.insert(self.numbers, at, number)
        whole = self.space.keys() <= params.keys()
        self.usable = np.insert(self.usable, at, whole)
        row = [d.to_internal_repr(params[n]) if whole else math.nan for n, d in self.space.items()]
        self.rows = np.insert(self.rows, at, np.asarray(row, dtype=float), axis=0)

    def below(self, n_below: int) -> list[int]:
        """The numbers of the ``n_below`` best trials: complete, then pruned, then infeasible."""
        chosen: list[int] = []
        for ranked in (self.complete, self.pruned, self.infeasible):
            take = max(0, min(n_below - len(chosen), len(ranked)))
            chosen.extend(number for _, number in ranked[:take])
        return sorted(chosen)


@dataclass
class StudyMemo:
    """What a TPE sampler keeps of one study: its search space, its finished trials."""

    search_space: IntersectionSearchSpace = field(
        default_factory=lambda: IntersectionSearchSpace(include_pruned=True)
    )
    finished: FinishedTrials | None = None


class SweepTPESampler(optuna.samplers.TPESampler):
    """:class:`~optuna.samplers.TPESampler`, with its finished trials kept between asks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # by storage and study id: a sampler reseeded for a trial also samples a replayed
        # copy of the study (resume after a kill inside an ask), which has its own
        self._memos: weakref.WeakKeyDictionary[BaseStorage, dict[int, StudyMemo]] = (
            weakref.WeakKeyDictionary()
        )

    def reseeded(self, seed: int | None) -> SweepTPESampler:
        """A sampler as new with ``seed``, that keeps what this one kept of its studies
        (their search spaces and finished trials: the studies', not the seed's)."""
        fresh = SweepTPESampler(
            seed=seed, constant_liar=self._constant_liar, multivariate=self._multivariate
        )
        fresh._memos = self._memos
        return fresh

    def _memo(self, study: Study) -> StudyMemo:
        studies = self._memos.setdefault(study._storage, {})
        return studies.setdefault(study._study_id, StudyMemo())

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        """Optuna's, from the search space kept for ``study``."""
        self._search_space = self._memo(study).search_space
        return super().infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """Optuna's, less the copy of the values it writes to the trial's system attributes.

        That copy is for the constant liar of other processes asking the same study while
        this ask has not yet given the trial its values. A sweep has one asker, its driver,
        and its ask gives the trial every value before anything else reads the study (a
        resume gives a trial cut short by a kill its values first, see
        :func:`~sweeper.sweep.left_running.finish_ask`): the copy was never read, and cost a
        database write per trial.
        """
        if self._group:
            return super().sample_relative(study, trial, search_space)
        return self._sample_relative(study, trial, search_space)

    def _sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """Optuna's, without reading every trial to count the finished ones once enough have."""
        kept = self._memo(study).finished
        if (
            kept is not None
            and kept.space == search_space
            and len(kept.seen) >= self._n_startup_trials
        ):
            return self._sample(study, trial, search_space)
        return super()._sample_relative(study, trial, search_space)

    def _sample(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """``TPESampler._sample`` from the kept trials (same observations, same order)."""
        kept = self._kept(study, search_space)
        if kept is None:
            return super()._sample(study, trial, search_space)
        states = [*LEARNED, TrialState.RUNNING] if self._constant_liar else list(LEARNED)
        running = self._take_new(study, kept, states, trial.number)
        if self._gamma is None:
            self._gamma = default_gamma
        below = kept.below(self._gamma(len(kept.seen)))
        mpe_below = self._estimator(search_space, self._rows(kept, below, [], study, above=False))
        mpe_above = self._estimator(
            search_space, self._rows(kept, below, running, study, above=True)
        )
        samples_below = mpe_below.sample(self._rng.rng, self._n_ei_candidates)
        acq_func_vals = self._compute_acquisition_func(samples_below, mpe_below, mpe_above)
        ret = self._compare(samples_below, acq_func_vals)
        for param_name, dist in search_space.items():
            ret[param_name] = dist.to_external_repr(ret[param_name])
        return ret

    def _take_new(
        self, study: Study, kept: FinishedTrials, states: list[TrialState], asking: int
    ) -> list[FrozenTrial]:
        """Keep the trials that finished since the last ask; the running ones but ``asking``.

        Every kept trial is still among the study's (finished trials stay), so the others
        number ``len(trials) - len(kept.seen)``: they are looked for from the newest back,
        and the walk stops once all are found (a few trials back, unless one runs long).
        """
        trials = study.get_trials(deepcopy=False, states=states)
        missing = len(trials) - len(kept.seen)
        running: list[FrozenTrial] = []
        for other in reversed(trials):
            if missing <= 0:
                break
            if other.number in kept.seen:
                continue
            missing -= 1
            if other.state != TrialState.RUNNING:
                kept.add(other, self._get_params(other, study))
            elif other.number != asking:
                running.append(other)
        return running[::-1]

    def _kept(
        self, study: Study, search_space: dict[str, BaseDistribution]
    ) -> FinishedTrials | None:
        """The kept trials of ``study`` for ``search_space``; None where Optuna's own code runs:
        several objectives, a custom ``gamma``, another space than the kept one (a parameter
        sampled on its own)."""
        if len(study.directions) > 1 or self._gamma not in (None, default_gamma):
            return None
        memo = self._memo(study)
        if memo.finished is None:
            minimize = study.direction == StudyDirection.MINIMIZE
            memo.finished = FinishedTrials(dict(search_space), minimize)
        return memo.finished if memo.finished.space == search_space else None

    def _rows(
        self,
        kept: FinishedTrials,
        below: list[int],
        running: list[FrozenTrial],
        study: Study,
        *,
        above: bool,
    ) -> np.ndarray:
        """The observations of ``below`` or (``above``) of every other kept trial and the
        ``running`` ones: whole rows only, in trial-number order (``_get_internal_repr``)."""
        numbers = kept.numbers
        in_below = np.zeros(len(numbers), dtype=bool)
        in_below[np.searchsorted(numbers, below)] = True
        mask = kept.usable & (~in_below if above else in_below)
        rows, at = kept.rows[mask], numbers[mask]
        whole = [
            (t.number, params)
            for t in running
            if kept.space.keys() <= (params := self._get_params(t, study)).keys()
        ]
        if whole:
            values = [[d.to_internal_repr(p[n]) for n, d in kept.space.items()] for _, p in whole]
            where = np.searchsorted(at, [number for number, _ in whole])
            rows = np.insert(rows, where, np.asarray(values, dtype=float), axis=0)
        return rows

    def _estimator(
        self, search_space: dict[str, BaseDistribution], rows: np.ndarray
    ) -> _ParzenEstimator:
        """Optuna's Parzen estimator of these observations (as ``_build_parzen_estimator``)."""
        observations = {name: rows[:, i] for i, name in enumerate(search_space)}
        mpe = self._parzen_estimator_cls(
            observations, search_space, self._parzen_estimator_parameters
        )
        if not isinstance(mpe, _ParzenEstimator):
            raise RuntimeError("_parzen_estimator_cls must override _ParzenEstimator.")
        return mpe


def _violation(trial: FrozenTrial) -> float:
    """How far a trial is from its constraints (``_get_infeasible_trial_score``)."""
    return sum(v for v in trial.constraints.values() if v > 0)


def _pruned_score(trial: FrozenTrial, minimize: bool) -> tuple[float, float]:
    """How a pruned trial ranks (``_get_pruned_trial_score``): the later its last step and
    the better its value there, the better."""
    if len(trial.intermediate_values) > 0:
        step, value = max(trial.intermediate_values.items())
        if math.isnan(value):
            return -step, float("inf")
        return -step, value if minimize else -value
    return 1, 0.0
