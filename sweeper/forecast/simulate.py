"""When will the rest of a sweep finish, and what will it use: :func:`forecast`.

The method, in three steps (docs/forecast.md explains it for users):

1. A :class:`~sweeper.forecast.model.DurationModel` is fit on the finished trials (complete,
   failed and pruned alike: a pruned trial's short run is part of what a trial takes). With
   fewer than :data:`MIN_OWN` of its own, a sweep borrows the finished trials of earlier
   sweeps of the same step (``prior``).
2. A seeded Monte Carlo runs the rest of the sweep :data:`RUNS` times over the ``slots``:
   each trial in flight ends after a duration drawn from its parameters' distribution
   *given the time it has already run*; each trial still to ask takes the parameters of a
   recent finished trial (the sampler's current habits) and a duration drawn around them.
   Each trial goes to the slot that frees first, after the time a slot has taken so far
   between one trial's end and the next one's start (starting a trial is not free); the
   last slot to free is the time to finish. Each run also shifts all its durations by a draw
   of how far the fitted mean may be off (sigma / sqrt(trials)): with few trials the whole
   rest may be slower or faster, not only each trial on its own.
3. The 10th, 50th and 90th percentiles of those times are the forecast and its 80%
   interval; the expected trial-seconds times the CPU and GPU seconds a trial used per
   second of its run are the expected CPU- and GPU-hours.

Deterministic: the same trials give the same forecast (the seed is fixed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from sweeper.forecast.model import DurationModel
from sweeper.forecast.target import TargetChance, target_chance
from sweeper.forecast.trials import FinishedTrial, RunningTrial, format_seconds

#: Simulated runs of the rest of the sweep.
RUNS = 400
#: Below this many finished trials of its own, a sweep borrows earlier sweeps' trials.
MIN_OWN = 5
#: Trials still to ask take the parameters of one of this many most recent finished trials.
RECENT = 20
_NORMAL = NormalDist()


@dataclass(frozen=True)
class Forecast:
    """The time to finish the rest of a sweep (median and 80% interval, seconds) and the CPU-
    and GPU-hours it is expected to use; ``unsure`` says why to trust it less.

    ``seconds_p50`` is None when nothing has finished yet (nothing to learn from).
    """

    remaining: int
    running: int
    slots: int
    learned_from: int
    borrowed: int = 0
    #: The 10th, 50th and 90th percentiles of the time to finish (seconds).
    seconds: tuple[float, float, float] | None = None
    cpu_hours: float | None = None
    gpu_hours: float | None = None
    #: The parameters the duration model reads (empty: every trial alike, the median).
    depends_on: tuple[str, ...] = ()
    unsure: tuple[str, ...] = ()
    target: TargetChance | None = None
    #: The expected duration of one more trial (seconds), for budgets.
    trial_s: float | None = None
    #: Expected seconds the trials in flight still run (the longest of them), for budgets.
    in_flight_s: float | None = None
    #: Expected trial-seconds of the rest (all slots together).
    trial_seconds: float | None = None

    @property
    def known(self) -> bool:
        """Whether there was anything to forecast from."""
        return self.seconds is not None

    @property
    def seconds_p10(self) -> float | None:
        """The low end of the 80% interval."""
        return None if self.seconds is None else self.seconds[0]

    @property
    def seconds_p50(self) -> float | None:
        """The median time to finish."""
        return None if self.seconds is None else self.seconds[1]

    @property
    def seconds_p90(self) -> float | None:
        """The high end of the 80% interval."""
        return None if self.seconds is None else self.seconds[2]

    def to_dict(self) -> dict[str, Any]:
        """The ``forecast`` entry of ``sweep status --json``."""
        data = asdict(self)
        del data["seconds"]
        data.update(seconds_p10=self.seconds_p10, seconds_p50=self.seconds_p50)
        data["seconds_p90"] = self.seconds_p90
        data["depends_on"] = list(self.depends_on)
        data["unsure"] = list(self.unsure)
        data["target"] = self.target.to_dict() if self.target is not None else None
        return data

    def short(self) -> str:
        """For a progress line: ``~4m10s left (3m–6m)``."""
        if self.seconds is None:
            return "time left: unknown yet"
        if self.remaining == 0 and self.running == 0:
            return "finished"
        return (
            f"~{format_seconds(self.seconds[1])} left "
            f"({format_seconds(self.seconds[0])}–{format_seconds(self.seconds[2])})"
        )

    def describe(self) -> list[str]:
        """Lines for ``sweep status``."""
        lines = [
            f"forecast: {self.short()} for {self.remaining} trials to ask and {self.running} running"
        ]
        if self.cpu_hours is not None:
            gpu = f", {self.gpu_hours:.3f} GPU-hours" if self.gpu_hours else ""
            lines.append(f"  expected use: {self.cpu_hours:.3f} CPU-hours{gpu}")
        basis = "on " + ", ".join(self.depends_on) if self.depends_on else "the median trial"
        borrowed = f" (+{self.borrowed} from earlier sweeps)" if self.borrowed else ""
        lines.append(
            f"  from {self.learned_from} finished trials{borrowed}, durations {basis}, {self.slots} slots"
        )
        lines.extend(f"  unsure: {why}" for why in self.unsure)
        if self.target is not None:
            lines.append("  " + self.target.describe())
        return lines


def forecast(
    finished: Sequence[FinishedTrial],
    running: Sequence[RunningTrial],
    remaining: int,
    slots: int,
    *,
    prior: Sequence[FinishedTrial] = (),
    target: tuple[float, str] | None = None,
    seed: int = 0,
) -> Forecast:
    """The forecast of a sweep with ``finished`` trials, ``running`` ones and ``remaining`` still
    to ask, over ``slots`` (see the module's docstring). ``prior``: earlier sweeps' finished
    trials, used when the sweep has fewer than :data:`MIN_OWN`. ``target``: (value, direction).
    """
    slots = max(1, slots, len(running))
    borrowed = list(prior) if len(finished) < MIN_OWN else []
    basis = [t for t in (*borrowed, *finished) if t.duration_s > 0]
    base = Forecast(remaining, len(running), slots, len(finished), len(borrowed))
    if not basis:
        return replace_unsure(base, ("no trial has finished yet",))
    model = DurationModel.fit([t.params for t in basis], [t.duration_s for t in basis])
    runs = _Runs.of(
        model, running, basis[-RECENT:], remaining, slots, seed, start_gaps(finished, slots)
    )
    times, trial_seconds = runs.times, runs.trial_seconds
    means = runs.means
    in_flight = runs.in_flight
    low, middle, high = (float(v) for v in np.percentile(times, [10, 50, 90]))
    cpu_rate, gpu_rate = _rates(basis)
    return Forecast(
        remaining,
        len(running),
        slots,
        len(finished),
        len(borrowed),
        (low, middle, high),
        _hours(cpu_rate, trial_seconds),
        _hours(gpu_rate, trial_seconds),
        depends_on=model.uses,
        unsure=_unsure(finished, borrowed, model),
        target=target_chance(finished, remaining, target, float(np.median(times)))
        if target
        else None,
        trial_s=float(np.exp(means).mean() * math.exp(model.sigma**2 / 2)),
        in_flight_s=float(in_flight.max(axis=0).mean()) if running else 0.0,
        trial_seconds=trial_seconds,
    )


@dataclass(frozen=True)
class _Runs:
    """The simulated runs: each one's time to finish, and what they share."""

    times: np.ndarray
    in_flight: np.ndarray
    means: np.ndarray
    trial_seconds: float

    @classmethod
    def of(
        cls,
        model: DurationModel,
        running: Sequence[RunningTrial],
        recent: Sequence[FinishedTrial],
        remaining: int,
        slots: int,
        seed: int,
        gaps: Sequence[float] = (),
    ) -> _Runs:
        """:data:`RUNS` runs of the rest: in-flight trials' remaining time drawn given their
        elapsed time, each trial to ask a recent trial's parameters and a drawn residual, and
        a slot's gap before it drawn from ``gaps``; all of a run's durations and gaps shifted
        by one draw of their means' own error (Student's t: the spread is estimated too)."""
        rng = np.random.default_rng(seed)
        in_flight = np.array([_remaining_time(model, t, rng.random(RUNS)) for t in running])
        in_flight = in_flight.reshape(len(running), RUNS)
        picks = rng.integers(0, len(recent), size=(RUNS, remaining))
        means = np.array([model.log_mean(t.params) for t in recent])
        shift = _mean_error(rng, model.sigma, len(model.residuals))
        draws = np.exp(means[picks] + rng.choice(_spread(model), size=(RUNS, remaining)) + shift)
        if gaps:
            spread = float(np.std(gaps, ddof=1)) if len(gaps) > 1 else float(gaps[0])
            gap_shift = _mean_error(rng, spread, len(gaps))
            draws += np.maximum(rng.choice(gaps, size=(RUNS, remaining)) + gap_shift, 0.0)
        times = _makespans(in_flight.T, draws, slots)
        seconds = float(in_flight.sum(axis=0).mean() + draws.sum(axis=1).mean())
        return cls(times, in_flight, means, seconds)


def start_gaps(finished: Sequence[FinishedTrial], slots: int) -> list[float]:
    """The times between a slot's trial ending and its next trial starting, seconds.

    With every slot busy, each start fills the slot the oldest unmatched end freed: in time
    order, start ``i + slots`` pairs with end ``i`` (over the :data:`RECENT` * 10 newest
    trials). Empty when no times are known.
    """
    spans = [t.span for t in finished[-RECENT * 10 :] if t.span is not None]
    starts = sorted(start for start, _ in spans)
    ends = sorted(end for _, end in spans)
    return [max(0.0, start - end) for start, end in zip(starts[slots:], ends, strict=False)]


def _mean_error(rng: np.random.Generator, spread: float, count: int) -> np.ndarray:
    """Per run, a draw of how far a mean of ``count`` values of this ``spread`` may be off."""
    if count < 2:
        return np.zeros((RUNS, 1))
    # t's tails, cut at 6: with 2 values it is a Cauchy, whose rare huge draws would make
    # the expected CPU-hours (a mean) infinite while the percentiles barely move
    draws = np.clip(rng.standard_t(count - 1, size=(RUNS, 1)), -6.0, 6.0)
    return draws * spread / math.sqrt(count)


def replace_unsure(result: Forecast, why: tuple[str, ...]) -> Forecast:
    """``result`` with ``why`` as its reasons to be unsure."""
    return Forecast(**{**asdict(result), "unsure": why, "target": result.target})


def _spread(model: DurationModel) -> np.ndarray:
    """Residuals to draw from: the model's own, or a normal of its sigma when it has few."""
    if len(model.residuals) >= MIN_OWN:
        return np.asarray(model.residuals)
    return np.array([model.sigma * _NORMAL.inv_cdf((i + 0.5) / 20) for i in range(20)])


def _remaining_time(model: DurationModel, trial: RunningTrial, u: np.ndarray) -> np.ndarray:
    """Draws of the time a running trial still runs: its log-normal duration given that it
    has already run ``elapsed_s`` (drawn from the part of the distribution above it)."""
    mu, sigma = model.log_mean(trial.params), model.sigma
    elapsed = max(trial.elapsed_s, 1e-3)
    low = _NORMAL.cdf((math.log(elapsed) - mu) / sigma)
    low = min(low, 0.999)  # far past its forecast: it ends soon after, as far as we can tell
    quantiles = np.clip(low + u * (1 - low), 1e-9, 1 - 1e-9)
    durations = np.exp(mu + sigma * np.array([_NORMAL.inv_cdf(float(q)) for q in quantiles]))
    return np.maximum(durations - elapsed, 0.0)


def _makespans(in_flight: np.ndarray, draws: np.ndarray, slots: int) -> np.ndarray:
    """Per run: when the last slot frees, trials in flight first, then each trial in turn
    on the slot that frees first."""
    runs = draws.shape[0]
    free = np.zeros((runs, slots))
    free[:, : in_flight.shape[1]] = in_flight
    rows = np.arange(runs)
    for column in draws.T:
        slot = free.argmin(axis=1)
        free[rows, slot] += column
    return free.max(axis=1)


def _hours(rate: float | None, trial_seconds: float) -> float | None:
    return None if rate is None else rate * trial_seconds / 3600


def _rates(trials: Sequence[FinishedTrial]) -> tuple[float | None, float | None]:
    """CPU- and GPU-seconds per second of a trial's run, over the trials that measured them."""
    measured = [t for t in trials if t.cpu_s is not None or t.gpu_s is not None]
    seconds = sum(t.duration_s for t in measured)
    if not measured or seconds <= 0:
        return None, None
    cpu = sum(t.cpu_s or 0.0 for t in measured) / seconds
    gpu = sum(t.gpu_s or 0.0 for t in measured) / seconds
    return cpu, gpu


def _unsure(
    finished: Sequence[FinishedTrial], borrowed: Sequence[FinishedTrial], model: DurationModel
) -> tuple[str, ...]:
    reasons = []
    if len(finished) < MIN_OWN:
        source = f", {len(borrowed)} borrowed from earlier sweeps" if borrowed else ""
        reasons.append(f"only {len(finished)} trials finished{source}")
    if model.sigma > 0.7:
        reasons.append(
            "trial durations vary a lot (more than 2x) beyond what the parameters explain"
        )
    return tuple(reasons)


__all__ = ["FinishedTrial", "Forecast", "RunningTrial", "forecast", "format_seconds"]
