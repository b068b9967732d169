"""Commands about pipelines: ``sweep pipeline run | ls | show | resume``.

\b
sweep pipeline run train-pipeline --runtime local
sweep pipeline run train-pipeline -p train.epochs=10 --input preprocess.dataset=data/x.csv
sweep pipeline show latest --json
sweep pipeline resume RUN_ID
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from sweeper.cli import output
from sweeper.cli.options import (
    config_option,
    env_option,
    pull_option,
    runtime_option,
    store_option,
)
from sweeper.cli.project import project_from
from sweeper.execution.spec import parse_assignments
from sweeper.status import Status

if TYPE_CHECKING:
    from sweeper.pipeline.result import PipelineResult

# The runner (and Ray behind it) is imported by the commands that run a pipeline.


def _echo_event(text: str) -> None:
    click.echo(f"sweep: {text}", err=True)


def _project_arguments(config_path: str | None, store: str | None) -> dict[str, Any]:
    """What the API calls of ``run`` and ``resume`` get from ``-f`` and ``--store``, and the echo."""
    return {"config": config_path or "valohai.yaml", "store": store, "on_event": _echo_event}


def _print(result: PipelineResult, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result.to_dict(), default=str))
        return
    rows = [
        [
            name,
            str(node.status),
            node.execution_id or "-",
            str(len(node.execution_ids)),
            node.reused_from or "-",
            node.error or "",
        ]
        for name, node in result.nodes.items()
    ]
    output.table(
        ["node", "status", "execution", "executions", "reused from", "error"],
        rows,
        title=f"pipeline run {result.pipeline_run_id} ({result.pipeline}): {result.status}",
    )


def _finish(result: PipelineResult, as_json: bool) -> None:
    """Print the run's summary; exit 0 when it completed."""
    _print(result, as_json)
    sys.exit(0 if result.status is Status.COMPLETE else 1)


#: ``--json`` of the commands that run a pipeline.
_json_summary_option = click.option(
    "--json", "as_json", is_flag=True, help="Print only the final summary as JSON on stdout."
)


@click.group(name="pipeline")
def pipeline_group() -> None:
    """Run valohai.yaml pipelines as a DAG on Ray, list and inspect their runs."""


@pipeline_group.command(name="run")
@click.argument("name")
@click.option(
    "-p",
    "--parameter",
    "params",
    multiple=True,
    metavar="NAME=VALUE|NODE.PARAM=VALUE",
    help="A pipeline parameter or a node's parameter (repeat for a list; a list on a task node adds a grid axis).",
)
@click.option(
    "--input",
    "inputs",
    multiple=True,
    metavar="NODE.INPUT=URI",
    help="An input URI of a node (repeat for several files).",
)
@env_option("An environment variable for every execution.")
@click.option(
    "--reuse",
    is_flag=True,
    help="Reuse completed executions with an identical spec (as reuse-executions: true).",
)
@runtime_option("Run executions as local processes or in the steps' Docker images.")
@pull_option
@click.option(
    "--max-retries",
    type=int,
    default=1,
    show_default=True,
    help="Retries of a node with on-error: retry.",
)
@click.option(
    "--address",
    help="Ray cluster: auto, HOST:PORT or ray://HOST:PORT (default: embedded local Ray).",
)
@_json_summary_option
@config_option
@store_option
def run_command(
    name: str,
    params: tuple[str, ...],
    inputs: tuple[str, ...],
    env: tuple[str, ...],
    reuse: bool,
    runtime: str,
    pull_policy: str,
    max_retries: int,
    address: str | None,
    as_json: bool,
    config_path: str | None,
    store: str | None,
) -> None:
    """Run pipeline NAME; exit 0 when every node completed."""
    from sweeper import api

    result = api.run_pipeline(
        name,
        parameters=parse_assignments(params, "-p"),
        inputs=parse_assignments(inputs, "--input"),
        environment={k: v[-1] for k, v in parse_assignments(env, "-e").items()},
        reuse=reuse,
        runtime=runtime,
        pull_policy=pull_policy,
        max_retries=max_retries,
        address=address,
        **_project_arguments(config_path, store),
    )
    _finish(result, as_json)


@pipeline_group.command(name="resume")
@click.argument("run_id")
@click.option("--address", help="Ray cluster to resume on (default: the one it was started with).")
@_json_summary_option
@config_option
@store_option
def resume_command(
    run_id: str, address: str | None, as_json: bool, config_path: str | None, store: str | None
) -> None:
    """Continue pipeline run RUN_ID (or latest): completed nodes are not run again."""
    from sweeper import api

    result = api.resume_pipeline(
        run_id,
        address=address,
        **_project_arguments(config_path, store),
    )
    _finish(result, as_json)


@pipeline_group.command(name="show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@config_option
@store_option
def show_command(run_id: str, as_json: bool, config_path: str | None, store: str | None) -> None:
    """Show one pipeline run (an id or latest) and its nodes."""
    from sweeper.api import pipeline_run_id
    from sweeper.pipeline.state import PipelineState

    opened = project_from(config_path, store).open_store()
    _print(PipelineState.load(opened, pipeline_run_id(opened, run_id)).result(), as_json)


@pipeline_group.command(name="ls")
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON.")
@config_option
@store_option
def ls_command(as_json: bool, config_path: str | None, store: str | None) -> None:
    """List pipeline runs, newest first."""
    from sweeper.pipeline.state import latest_runs

    runs = latest_runs(project_from(config_path, store).open_store())
    if as_json:
        click.echo(json.dumps([run.to_dict() for run in runs], default=str))
        return
    rows = [
        [
            run.pipeline_run_id,
            run.pipeline or "-",
            run.status or "-",
            str(run.created_at),
            ", ".join(f"{name}:{node.get('status')}" for name, node in run.nodes.items()),
        ]
        for run in runs
    ]
    output.table(["run", "pipeline", "status", "created", "nodes"], rows)


COMMANDS = [pipeline_group]


def main(argv: list[str] | None = None) -> None:
    """Run the ``pipeline`` group on its own (``python -m sweeper.cli.commands_pipeline``)."""
    from sweeper.cli.main import _guarded

    _guarded(pipeline_group.main)(args=argv, prog_name="sweep pipeline", standalone_mode=True)


if __name__ == "__main__":
    main()
