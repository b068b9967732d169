"""The ``sweep`` command: lint, run, sweep, inspect and compare executions.

``sweep STEP ...`` is short for ``sweep sweep STEP ...``; a subcommand name always wins
over a step name. Every problem a user can fix ends as one paragraph on stderr and a
non-zero exit status, never a traceback.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import Any, TextIO

import click

from sweeper.cli import (
    commands_dashboard,
    commands_exec,
    commands_pipeline,
    commands_results,
    commands_sweep,
)
from sweeper.errors import SweeperError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class StepDefaultGroup(click.Group):
    """A group where an unknown first word is a step name to sweep (``sweep STEP --trials N``)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["sweep", *args]
        return super().parse_args(ctx, args)


@click.group(cls=StepDefaultGroup, context_settings=CONTEXT)
@click.version_option(package_name="sweeper")
def cli() -> None:
    """Run valohai.yaml steps, hyperparameter sweeps and pipelines on Ray.

    \b
    sweep lint                          check valohai.yaml
    sweep run STEP -p lr=0.1            run one execution
    sweep STEP --trials 50              sweep a step (same as: sweep sweep STEP ...)
    sweep ls --sweep latest             list executions
    sweep pipeline run NAME             run a valohai.yaml pipeline
    sweep dashboard                     optuna-dashboard on the latest sweep, live

    \b
    Search space of a sweep (-p, repeatable; see `sweep sweep --help`):
      -p lr=log:1e-5..1e-1   log-scale float    -p layers=int:1..4   integer range
      -p drop=0.1..0.5       float range        -p act=relu,tanh     one of these values
      -p epochs=5            a fixed value
    """


for module in (
    commands_exec,
    commands_sweep,
    commands_results,
    commands_pipeline,
    commands_dashboard,
):
    for command in module.COMMANDS:
        cli.add_command(command)


def _guarded(func: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SweeperError as exc:
            click.echo(f"sweep: error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("sweep: interrupted", err=True)
            sys.exit(130)

    return wrapper


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    # A damaged part file and the like: one line naming it, not Python's warning format.
    click.echo(f"sweep: warning: {message}", err=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``sweep`` console script."""
    warnings.showwarning = _show_warning
    _guarded(cli.main)(args=argv, prog_name="sweep", standalone_mode=True)


if __name__ == "__main__":
    main()
