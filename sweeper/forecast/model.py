"""How long a trial takes, as it depends on its parameters: :class:`DurationModel`.

A ridge regression of log-duration on the trial's numeric parameters (each taken as its
log when it is always positive: an ``epochs`` or ``size`` parameter scales a duration by a
factor, not by a sum). When there are too few trials for the parameters, or the
parameters explain almost nothing, the model is the median of the log-durations. The
residuals' spread is the model's uncertainty: a prediction is a log-normal distribution.

>>> trials = [({"epochs": e}, 2.0 * e) for e in (1, 2, 4, 8, 1, 2, 4, 8)]
>>> model = DurationModel.fit([p for p, _ in trials], [d for _, d in trials])
>>> model.uses
('epochs',)
>>> round(model.median({"epochs": 16}))
31
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Fewer finished trials than this per parameter (plus a constant) and the model is the median.
TRIALS_PER_FEATURE = 3
#: The parameters must explain at least this share of the log-durations' variance.
MIN_EXPLAINED = 0.2
#: The ridge penalty, on standardized features (keeps a few trials from making a wild slope).
RIDGE = 0.1
#: The least spread assumed (log scale): durations never repeat exactly.
MIN_SIGMA = 0.05


@dataclass(frozen=True)
class DurationModel:
    """Log-duration = ``intercept`` + ``coef`` · standardized features, ± ``sigma``.

    ``uses`` names the parameters the model reads (empty: the median model); ``logged``
    says which of them are taken as logs; ``center``/``scale`` standardize them.
    """

    intercept: float
    sigma: float
    uses: tuple[str, ...] = ()
    logged: tuple[bool, ...] = ()
    center: tuple[float, ...] = ()
    scale: tuple[float, ...] = ()
    coef: tuple[float, ...] = ()
    #: The residuals (log scale) of the trials it was fit on, for sampling the spread.
    residuals: tuple[float, ...] = ()

    @classmethod
    def fit(cls, params: Sequence[Mapping[str, Any]], durations: Sequence[float]) -> DurationModel:
        """The model of ``durations`` (seconds, > 0) given each trial's ``params``."""
        y = np.log(np.maximum(np.asarray(durations, dtype=float), 1e-3))
        if len(y) == 0:
            return cls(intercept=0.0, sigma=1.0)
        median = cls._median(y)
        names = _numeric_names(params)
        if not names or len(y) < TRIALS_PER_FEATURE * (len(names) + 1):
            return median
        logged = tuple(all(float(p[n]) > 0 for p in params) for n in names)
        x = np.array(
            [[_feature(p[n], lg) for n, lg in zip(names, logged, strict=True)] for p in params]
        )
        center, scale = x.mean(axis=0), x.std(axis=0)
        keep = scale > 1e-12  # a parameter that never changed explains nothing
        if not keep.any():
            return median
        names = tuple(n for n, k in zip(names, keep, strict=True) if k)
        logged = tuple(lg for lg, k in zip(logged, keep, strict=True) if k)
        z = (x[:, keep] - center[keep]) / scale[keep]
        coef = np.linalg.solve(z.T @ z + RIDGE * np.eye(z.shape[1]), z.T @ (y - y.mean()))
        residuals = y - y.mean() - z @ coef
        total = float(((y - y.mean()) ** 2).sum())
        if total <= 0 or 1 - float((residuals**2).sum()) / total < MIN_EXPLAINED:
            return median
        dof = max(1, len(y) - len(names) - 1)
        return cls(
            intercept=float(y.mean()),
            sigma=max(MIN_SIGMA, math.sqrt(float((residuals**2).sum()) / dof)),
            uses=names,
            logged=logged,
            center=tuple(float(c) for c in center[keep]),
            scale=tuple(float(s) for s in scale[keep]),
            coef=tuple(float(c) for c in coef),
            residuals=tuple(float(r) for r in residuals),
        )

    @classmethod
    def _median(cls, y: np.ndarray) -> DurationModel:
        center = float(np.median(y))
        spread = float(np.std(y, ddof=1)) if len(y) > 1 else 0.5
        return cls(
            intercept=center,
            sigma=max(MIN_SIGMA, spread),
            residuals=tuple(float(v) for v in y - center),
        )

    def log_mean(self, params: Mapping[str, Any]) -> float:
        """The expected log-duration for ``params`` (a parameter it lacks: its average)."""
        total = self.intercept
        for i, name in enumerate(self.uses):
            value: Any = params.get(name)
            if _is_number(value) and (not self.logged[i] or float(value) > 0):
                total += (
                    self.coef[i]
                    * (_feature(value, self.logged[i]) - self.center[i])
                    / self.scale[i]
                )
        return total

    def median(self, params: Mapping[str, Any]) -> float:
        """The median duration (seconds) of a trial with ``params``."""
        return math.exp(self.log_mean(params))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _feature(value: Any, logged: bool) -> float:
    return math.log(float(value)) if logged else float(value)


def _numeric_names(params: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The parameters every trial has as a finite number (booleans are choices, not numbers)."""
    if not params:
        return ()
    names = set(params[0])
    for p in params[1:]:
        names &= set(p)
    return tuple(sorted(n for n in names if all(_is_number(p[n]) for p in params)))
