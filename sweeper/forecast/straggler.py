"""Whether a running trial is a straggler (``--straggler-factor K``): :func:`straggler_reason`.

A trial is a straggler once it has run more than ``K`` times the median duration the
:class:`~sweeper.forecast.model.DurationModel` forecasts for its parameters. It is judged
only once :data:`MIN_FINISHED` trials have finished, and only when the parameters the model
reads lie within the values those trials had (a larger ``epochs`` than any finished trial's
is a forecast by extrapolation, too unsure to stop a trial for).

>>> model = DurationModel.fit([{}] * 5, [10.0] * 5)
>>> straggler_reason(model, [{}] * 5, {}, elapsed_s=41.0, factor=3)
'straggler: ran 41 s, 3 × the 10 s forecast for its parameters'
>>> straggler_reason(model, [{}] * 5, {}, elapsed_s=29.0, factor=3) is None
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sweeper.errors import SweeperError
from sweeper.forecast.model import DurationModel

#: Finished trials needed before any trial is judged a straggler.
MIN_FINISHED = 5


def straggler_reason(
    model: DurationModel,
    finished: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
    *,
    elapsed_s: float,
    factor: float,
) -> str | None:
    """Why a trial with ``params`` that has run ``elapsed_s`` is a straggler, or None.

    ``model`` was fit on the ``finished`` trials' parameters (see the module's docstring).
    """
    if len(finished) < MIN_FINISHED or not _within(model, finished, params):
        return None
    expected = model.median(params)
    if elapsed_s <= factor * expected:
        return None
    return (
        f"straggler: ran {elapsed_s:.3g} s, {factor:g} × the {expected:.3g} s forecast "
        "for its parameters"
    )


def check_factor(factor: float) -> None:
    """A :class:`SweeperError` for a factor that would stop trials as fast as the forecast."""
    if not factor > 1:
        raise SweeperError(
            "--straggler-factor must be more than 1 (a multiple of the forecast duration), "
            f"not {factor:g}"
        )


def _within(
    model: DurationModel, finished: Sequence[Mapping[str, Any]], params: Mapping[str, Any]
) -> bool:
    """Whether each parameter the model reads is one ``params`` has, within the finished
    trials' range."""
    for name in model.uses:
        value = params.get(name)
        seen = [p[name] for p in finished if name in p]
        if not isinstance(value, (int, float)) or not seen:
            return False
        if not min(seen) <= value <= max(seen):
            return False
    return True
