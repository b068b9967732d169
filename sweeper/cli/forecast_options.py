"""The forecast's options of ``sweep STEP`` and ``sweep resume``: budgets, a target, stragglers.

``--budget`` is a duration as valohai.yaml writes them (``90m``, ``1h 30m``), parsed here so
that a typo is one ``sweep: error:`` line, not a usage screen.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import click

from sweeper.errors import SweeperError

#: The budget options, shared by ``sweep STEP`` and ``sweep resume``.
BUDGET_OPTIONS: list[Callable[..., Any]] = [
    click.option(
        "--budget",
        metavar="DURATION",
        help="Ask no more trials once one more would end after this much wall time (by the "
        "forecast), e.g. 30m or 2h; all runs of the sweep together.",
    ),
    *(
        click.option(
            f"--budget-{kind.lower()}-hours", type=float, help=f"The same for {kind}-hours."
        )
        for kind in ("CPU", "GPU")
    ),
]
#: The options of ``sweep STEP`` about its forecast.
FORECAST_OPTIONS: list[Callable[..., Any]] = [
    *BUDGET_OPTIONS,
    click.option(
        "--target",
        type=float,
        help="A value of --metric to reach: the forecast gives the chance and time to reach it.",
    ),
    click.option(
        "--straggler-factor",
        metavar="K",
        help="Stop a trial that runs K times longer than the forecast duration for its "
        "parameters (recorded as a time_limit failure), e.g. 3.",
    ),
]


def budget_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate ``func`` with :data:`BUDGET_OPTIONS`."""
    for option in reversed(BUDGET_OPTIONS):
        func = option(func)
    return func


def forecast_kwargs(kw: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`~sweeper.sweep.plan.SweepOptions` fields of the options given (those not
    given left out, so that a resume keeps the sweep's own)."""
    from sweeper.config.duration import parse_duration  # the config package loads YAML

    budget: dict[str, float] = {}
    if kw.get("budget") is not None:
        try:
            budget["wall_s"] = parse_duration(kw["budget"])
        except ValueError as exc:
            raise SweeperError(f"--budget {exc}") from None
    for kind in ("cpu", "gpu"):
        if kw.get(f"budget_{kind}_hours") is not None:
            budget[f"{kind}_hours"] = kw[f"budget_{kind}_hours"]
    if budget:  # checked before a Ray starts: a typo is the first thing the user sees
        from sweeper.sweep.budget import Budget

        Budget.of(budget)
    chosen: dict[str, Any] = {"budget": budget} if budget else {}
    if kw.get("target") is not None:
        chosen["target"] = kw["target"]
    if kw.get("straggler_factor") is not None:
        chosen["straggler_factor"] = _factor(kw["straggler_factor"])
    return chosen


def _factor(text: str) -> float:
    """``--straggler-factor``'s value; a :class:`SweeperError` unless a number above 1."""
    try:
        factor = float(text)
    except ValueError:
        raise SweeperError(f"--straggler-factor must be a number, not {text!r}") from None
    from sweeper.forecast.straggler import check_factor

    check_factor(factor)
    return factor
