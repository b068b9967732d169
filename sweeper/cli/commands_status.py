"""``sweep status``: a sweep's counts, best, resources, forecast and budget, also while it runs;
and the lines the end of a sweep shares with it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from sweeper.cli import output
from sweeper.cli.options import config_option, json_option, store_option
from sweeper.cli.project import project_from
from sweeper.errors import SweeperError

if TYPE_CHECKING:
    from sweeper.store import RecordStore
    from sweeper.sweep.result import SweepResult


def reused_text(result: SweepResult) -> str:
    """`` (reused N)`` after the complete count when the store answered trials (--reuse)."""
    return f" (reused {result.reused} from the store)" if result.reused else ""


def print_warm_start(result: SweepResult, *, indent: str) -> None:
    """What a warm start added, and why the rest did not fit."""
    if result.warm_start is not None:
        click.echo(indent + result.warm_start.describe())


def print_failures(result: SweepResult, *, indent: str) -> None:
    """The failed trials by class and reason, most common first (see :mod:`sweeper.sweep.failures`)."""
    if result.failures:
        classes = {k: v for k, v in result.failure_classes.items() if v}
        click.echo(
            f"{indent}failures by class: " + ", ".join(f"{k} {v}" for k, v in classes.items())
        )
        click.echo(f"{indent}failures by reason:")
        for group in result.failures:
            click.echo(f"{indent}  {group}")


def print_forecast(result: SweepResult, *, indent: str) -> None:
    """The forecast of the rest (while trials are left) and the budget: spent, and why it
    stopped the sweep."""
    from sweeper.sweep.budget import Budget, Spent

    forecast = result.forecast
    if forecast is not None and (forecast.remaining or forecast.running):
        for line in forecast.describe():
            click.echo(indent + line)
    elif forecast is not None and forecast.target is not None:
        click.echo(indent + forecast.target.describe())
    if result.budget is not None:
        spent = Spent.from_dict(result.budget.get("spent"))
        click.echo(indent + Budget.of(result.budget).describe(spent))
        if result.budget.get("stopped"):
            click.echo(
                f"{indent}stopped asking for trials: {result.budget['stopped']} "
                f"(sweep resume {result.sweep_id} --budget ... gives it more)"
            )


def _latest_sweep(store: RecordStore) -> str:
    sweep_id = store.latest_sweep()
    if sweep_id is None:
        raise SweeperError(f"no sweep in the store {store.location}")
    return sweep_id


@click.command()
@click.argument("sweep_id", required=False)
@json_option("Print the summary as JSON (with its forecast under `forecast`).")
@config_option
@store_option
def status(sweep_id: str | None, as_json: bool, config_path: str | None, store: str | None) -> None:
    """Show a sweep's progress, also while it runs (default: the latest sweep)."""
    opened = project_from(config_path, store).open_store()
    sweep_id = sweep_id or _latest_sweep(opened)
    from sweeper.sweep.summary import saved_sweep, sweep_summary

    result = sweep_summary(opened, sweep_id)
    if as_json:
        click.echo(json.dumps(result.to_dict(), default=str))
        return
    counts = result.counts
    click.echo(
        f"sweep {sweep_id} ({result.status}): step {saved_sweep(opened, sweep_id)['options']['step']}, "
        f"{result.trials_asked} trials asked"
    )
    click.echo(
        f"  complete {counts['complete']}{reused_text(result)}, failed {counts['error']}, "
        f"pruned {counts['pruned']}, running {counts['running']}"
    )
    best = result.best
    if best is not None and not isinstance(best, tuple):
        click.echo(
            f"  best {output.format_value(best.value)}: {json.dumps(dict(best.parameters), default=str)}"
        )
    print_warm_start(result, indent="  ")
    click.echo("  " + result.resources.describe())
    print_forecast(result, indent="  ")
    print_failures(result, indent="  ")
