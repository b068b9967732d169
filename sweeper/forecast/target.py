"""The chance that a sweep reaches ``--target`` within its remaining trials: :func:`target_chance`.

Each further trial is taken as a draw from the values the recent complete trials reached (a
normal fit to them: the sampler's current habits, which is how the best value has been
improving); the chance that one trial beats the target is ``p``, the chance that one of
the ``remaining`` does is ``1 - (1 - p) ** remaining``, and the expected number of trials
to the first one is ``1 / p`` (a geometric wait), each taking the sweep's time per trial.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist, fmean, stdev
from typing import Any

from sweeper.forecast.trials import FinishedTrial, format_seconds

#: The values of this many most recent complete trials describe the next one.
RECENT = 20


@dataclass(frozen=True)
class TargetChance:
    """The chance of reaching ``value`` within the remaining trials, and the expected time to
    it (seconds; 0 once reached, None when it looks out of reach)."""

    value: float
    direction: str
    reached: bool
    chance: float
    expected_s: float | None

    def to_dict(self) -> dict[str, Any]:
        """The ``target`` entry of the forecast's JSON."""
        return asdict(self)

    def describe(self) -> str:
        """One line for ``sweep status``."""
        if self.reached:
            return f"target {self.value:g}: reached"
        if self.expected_s is None:
            return f"target {self.value:g}: {self.chance:.0%} chance within the remaining trials"
        return (
            f"target {self.value:g}: {self.chance:.0%} chance within the remaining trials, "
            f"expected in ~{format_seconds(self.expected_s)}"
        )


def target_chance(
    finished: Sequence[FinishedTrial],
    remaining: int,
    target: tuple[float, str],
    seconds_left: float | None,
) -> TargetChance:
    """How likely ``target`` (value, direction) is reached in ``remaining`` more trials that
    take ``seconds_left`` together (see the module's docstring)."""
    value, direction = target
    sign = 1.0 if direction == "maximize" else -1.0
    values = [t.value for t in finished if t.value is not None]
    if any(sign * (v - value) >= 0 for v in values):
        return TargetChance(value, direction, True, 1.0, 0.0)
    recent = values[-RECENT:]
    if len(recent) < 2 or remaining <= 0:
        return TargetChance(value, direction, False, 0.0, None)
    spread = stdev(recent) or 1e-12
    beyond = NormalDist(fmean(recent), spread).cdf(value)
    p = 1.0 - beyond if sign > 0 else beyond
    chance = 1.0 - (1.0 - p) ** remaining
    expected = None
    if p > 0 and 1 / p <= remaining and seconds_left is not None:
        expected = seconds_left / remaining / p
    return TargetChance(value, direction, False, round(chance, 4), expected)
