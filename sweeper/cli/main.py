"""The ``sweep`` command: lint, run, sweep, inspect and compare executions.

``sweep STEP ...`` is short for ``sweep sweep STEP ...``; a subcommand name always wins
over a step name. Every problem a user can fix ends as one paragraph on stderr and a
non-zero exit status, never a traceback.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TextIO

import click

from sweeper.errors import SweeperError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

#: Every command: name -> ("module:attribute", the first sentence of its help). A command's
#: module (and what it imports: Ray, Optuna, pandas...) is loaded only when that command runs,
#: so `sweep lint` answers at once; `sweep --help` lists the commands from this table.
#: tests/cli/test_cli_imports.py checks the table against the commands themselves.
COMMANDS: dict[str, tuple[str, str]] = {
    "compact": (
        "sweeper.cli.commands_results:compact",
        "Merge small Parquet parts into one, without changing what readers see.",
    ),
    "compare": (
        "sweeper.cli.commands_results:compare",
        "Parameters and metrics of executions side by side; differences highlighted.",
    ),
    "down": (
        "sweeper.cli.commands_deploy:down",
        "Stop the local Ray head `sweep up` started (and every deployment on it).",
    ),
    "dashboard": (
        "sweeper.cli.commands_dashboard:dashboard",
        "Serve optuna-dashboard on a sweep's study, live while it runs (default: the latest sweep).",
    ),
    "datasets": (
        "sweeper.cli.commands_results:datasets",
        "List dataset versions: files, sizes, the execution that made each and those that used it.",
    ),
    "deploy": (
        "sweeper.cli.commands_deploy:deploy",
        "Deploy ENDPOINT... of valohai.yaml as a new version of a deployment on Ray Serve.",
    ),
    "deployment": (
        "sweeper.cli.commands_deploy:deployment_group",
        "Move an alias, stop versions, read an endpoint's log.",
    ),
    "deployments": (
        "sweeper.cli.commands_deploy:deployments",
        "List deployments: versions, their status, aliases and URLs.",
    ),
    "doctor": (
        "sweeper.cli.commands_results:doctor",
        "List damaged (truncated or corrupt) part files; exit 1 when there are any.",
    ),
    "jobs": (
        "sweeper.cli.commands_sweep:jobs",
        "List the Ray jobs of a cluster, oldest first (sweeps as `sweep ARGS`).",
    ),
    "lineage": (
        "sweeper.cli.commands_results:lineage",
        "The lineage of an execution or a datum://: who produced its inputs, who used its outputs.",
    ),
    "lint": (
        "sweeper.cli.commands_exec:lint",
        "Check a valohai.yaml; print FILE:LINE: error|warning: message for each problem.",
    ),
    "logs": ("sweeper.cli.commands_exec:logs", "Print the log of one execution."),
    "ls": (
        "sweeper.cli.commands_results:ls",
        "List executions, with their parameters (param.*) and summary metrics (metric.*).",
    ),
    "outputs": (
        "sweeper.cli.commands_exec:outputs",
        "List (or download with -d) the outputs of one execution.",
    ),
    "pipeline": (
        "sweeper.cli.commands_pipeline:pipeline_group",
        "Run valohai.yaml pipelines as a DAG on Ray, list and inspect their runs.",
    ),
    "plot": (
        "sweeper.cli.commands_results:plot",
        "Write PNG plots of a sweep: history, importances, parallel coordinates, top-trial curves "
        "and, with --replay, the curves a pruner would have cut.",
    ),
    "rerun": (
        "sweeper.cli.commands_exec:rerun",
        "Run EXECUTION again with the same spec: image digest, inputs by checksum, code, parameters.",
    ),
    "replay": (
        "sweeper.cli.commands_results:replay",
        "Replay a finished sweep's recorded metric curves under a pruner, without running "
        "anything.",
    ),
    "resume": (
        "sweeper.cli.commands_sweep:resume",
        "Continue a sweep to exactly its number of trials (default: the latest unfinished one).",
    ),
    "run": (
        "sweeper.cli.commands_exec:run",
        "Run one execution of STEP and exit with its status (0 when complete).",
    ),
    "show": ("sweeper.cli.commands_exec:show", "Show one execution (an id, #counter or latest)."),
    "status": (
        "sweeper.cli.commands_sweep:status",
        "Show a sweep's progress, also while it runs (default: the latest sweep).",
    ),
    "steps": (
        "sweeper.cli.commands_exec:steps",
        "List the steps with their parameters, inputs and resources.",
    ),
    "submit": (
        "sweeper.cli.commands_sweep:submit",
        "Submit `sweep ARGS...` as a Ray job with the project folder as its working directory.",
    ),
    "up": (
        "sweeper.cli.commands_deploy:up",
        "Start a warm local Ray (with Serve) that the commands join; --status: is one up.",
    ),
    "verify": (
        "sweeper.cli.commands_verify:verify",
        "Run an execution again from its record and compare, field by field; 0 when it reproduced.",
    ),
    "sweep": (
        "sweeper.cli.commands_sweep:sweep_command",
        "Sweep STEP: run N trials, Optuna suggesting parameters, each trial one execution on a "
        "Ray actor that holds the step's CPUs/GPUs.",
    ),
}


class LazyGroup(click.Group):
    """A group that imports a command's module only when the command is looked up.

    Help lists the commands from ``lazy`` (name -> ("module:attribute", short help)) without
    importing any of them.
    """

    def __init__(self, *args: Any, lazy: Mapping[str, tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module_name, attribute = self.lazy[cmd_name][0].split(":")
            command = getattr(importlib.import_module(module_name), attribute)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click's own layout and shortening, fed from the table instead of the loaded commands
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            if name in self.lazy:
                help_text = click.Command(name, help=self.lazy[name][1]).get_short_help_str(limit)
            else:
                help_text = self.commands[name].get_short_help_str(limit)
            rows.append((name, help_text))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


class StepDefaultGroup(LazyGroup):
    """A group where an unknown first word is a step name to sweep (``sweep STEP --trials N``)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.list_commands(ctx):
            args = ["sweep", *args]
        return super().parse_args(ctx, args)


@click.group(cls=StepDefaultGroup, context_settings=CONTEXT, lazy=COMMANDS)
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
