"""Commands about the configuration and single executions: lint, steps, run, show, logs..."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sweeper.cli import output
from sweeper.cli.options import (
    config_option,
    env_option,
    json_option,
    pull_option,
    runtime_option,
    store_option,
)
from sweeper.cli.project import project_from
from sweeper.config import lint_file
from sweeper.errors import SweeperError
from sweeper.record import ExecutionRecord
from sweeper.status import Status

if TYPE_CHECKING:
    from sweeper.execution.runner import StopToken
# The runner, the runtimes and the input fetchers (urllib, ssl) are imported by the commands
# that run something, so that lint, steps and run --dry-run start at once.


@click.command()
@click.argument("file", required=False)
@config_option
def lint(file: str | None, config_path: str | None) -> None:
    """Check a valohai.yaml; print FILE:LINE: error|warning: message for each problem."""
    path = Path(file or config_path or "valohai.yaml")
    problems = lint_file(path)
    for problem in problems:
        click.echo(str(problem))
    errors = sum(1 for p in problems if p.level == "error")
    if errors:
        sys.exit(1)
    click.echo(f"{path}: ok" + (f" ({len(problems)} warnings)" if problems else ""), err=True)


def _span(low: float | None, high: float | None) -> str:
    """A resource range as people write it: ``2``, ``1..4``, ``>= 1``, ``<= 4``."""
    if low and high:
        return f"{low:g}" if low == high else f"{low:g}..{high:g}"
    return f">= {low:g}" if low else f"<= {high:g}"


@click.command()
@config_option
def steps(config_path: str | None) -> None:
    """List the steps with their parameters, inputs and resources."""
    from sweeper.config.fields import has_control_characters
    from sweeper.config.problems import quoted

    config = project_from(config_path, None).config
    rows = []
    for step in config.steps.values():
        params = ", ".join(f"{p.name}:{p.type}" for p in step.parameters) or "-"
        inputs = ", ".join(i.name for i in step.inputs) or "-"
        res = step.resources
        resources = []
        if res.cpu_min or res.cpu_max:
            resources.append(f"cpu {_span(res.cpu_min, res.cpu_max)}")
        if res.memory_min or res.memory_max:
            resources.append(f"memory {_span(res.memory_min, res.memory_max)} MB")
        if res.gpus:
            resources.append(f"gpu {res.gpus:g}")
        name = quoted(step.name) if has_control_characters(step.name) else step.name
        rows.append([name, step.image or "-", params, inputs, ", ".join(resources) or "-"])
    output.table(["step", "image", "parameters", "inputs", "resources"], rows)


@contextmanager
def _ctrl_c_stops(stop: StopToken) -> Iterator[None]:
    """While the block runs, the first Ctrl-C (SIGINT) asks ``stop``; a second one raises.

    A handler rather than `except KeyboardInterrupt`: the exception can be raised at any
    line, before the `try` that would catch it too (while a thread starts), and would then
    end this process with the step still running and its record left `started`. Python runs
    handlers in the main thread only; elsewhere (an embedding program) Ctrl-C is not ours.
    """

    def on_ctrl_c(signum: int, frame: object) -> None:
        if stop.event.is_set():
            raise KeyboardInterrupt  # the user gives up waiting
        click.echo("sweep: stopping the execution (Ctrl-C again to force)...", err=True)
        stop.stop(Status.STOPPED)

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_ctrl_c) if in_main else None
    try:
        yield
    finally:
        if in_main:
            signal.signal(
                signal.SIGINT, signal.default_int_handler if previous is None else previous
            )


def _run_with_ctrl_c(func: Callable[[StopToken], ExecutionRecord]) -> ExecutionRecord:
    """Run ``func`` in a thread so that Ctrl-C stops the execution cleanly instead of killing it.

    From the call on, the first Ctrl-C asks the execution to stop, whenever it comes: before
    its thread has started, while it prepares, starts or runs its step, or while it writes
    its record. The record then says ``stopped``, unless the execution had ended (or reached
    its time limit) first. A second Ctrl-C raises KeyboardInterrupt.
    """
    from sweeper.execution.runner import StopToken

    stop = StopToken()
    result: list[ExecutionRecord] = []
    failure: list[BaseException] = []
    done = threading.Event()

    def target() -> None:
        try:
            result.append(func(stop))
        except BaseException as exc:  # re-raised in the main thread below
            failure.append(exc)
        finally:
            done.set()

    with _ctrl_c_stops(stop):
        threading.Thread(target=target, name="sweeper-execution", daemon=True).start()
        # Short waits, not one long one: the handler runs only when this thread wakes up,
        # and a signal delivered to another thread does not wake it.
        while not done.wait(0.2):
            pass
    if failure:
        raise failure[0]
    return result[0]


def _exit_status(record: ExecutionRecord) -> int:
    if record.status == Status.COMPLETE:
        return 0
    code = record.exit_code
    return code if isinstance(code, int) and 0 < code < 256 else 1


def _execution(
    call: Callable[..., ExecutionRecord], *, as_json: bool, **options: Any
) -> ExecutionRecord:
    """Call :func:`sweeper.api.run`/``rerun`` streaming the log, and print the final record.

    The record is printed as soon as it is final, so that an error raised after the run (a
    re-run whose input changed) still shows it.
    """
    stream = sys.stderr if as_json else sys.stdout

    def echo(line: str) -> None:
        stream.write(line + "\n")
        stream.flush()

    def on_record(record: ExecutionRecord) -> None:
        if record.status == Status.STARTED:
            click.echo(f"sweep: execution #{record.counter} {record.id} ({record.step})", err=True)
        elif record.is_final:
            if as_json:
                click.echo(json.dumps(record.to_dict(), indent=2, default=str))
            else:
                output.execution_summary(record)

    return _run_with_ctrl_c(lambda stop: call(echo=echo, stop=stop, on_record=on_record, **options))


@click.command()
@click.argument("step")
@click.option(
    "-p",
    "--parameter",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="A parameter value (repeat for multiple).",
)
@click.option(
    "--input",
    "inputs",
    multiple=True,
    metavar="NAME=URI",
    help="An input URI (repeat for several files).",
)
@env_option("An environment variable for the step.")
@runtime_option("Where the command runs: in the step's Docker image, or as a local process.")
@pull_option
@json_option("Logs to stderr; the final record as JSON on stdout.")
@click.option(
    "--reuse",
    is_flag=True,
    help="Return a completed execution with the identical spec instead of running.",
)
@click.option(
    "--dry-run", is_flag=True, help="Print the rendered command(s), one per line, and exit."
)
@click.option(
    "--address",
    help="Run it on a Ray actor of this cluster: auto, HOST:PORT or ray://HOST:PORT (default: here, without Ray).",
)
@config_option
@store_option
def run(
    step: str,
    params: tuple[str, ...],
    inputs: tuple[str, ...],
    env: tuple[str, ...],
    runtime: str,
    pull_policy: str,
    as_json: bool,
    reuse: bool,
    dry_run: bool,
    address: str | None,
    config_path: str | None,
    store: str | None,
) -> None:
    """Run one execution of STEP and exit with its status (0 when complete)."""
    from sweeper.execution.spec import parse_assignments

    parameters = parse_assignments(params, "-p")
    if dry_run:
        step_obj = project_from(config_path, store).config.get_step(step)
        for command in step_obj.build_command(step_obj.parse_parameter_values(parameters)):
            click.echo(command)
        return
    from sweeper import api

    record = _execution(
        api.run,
        as_json=as_json,
        step=step,
        parameters=parameters,
        inputs=parse_assignments(inputs, "--input"),
        environment={k: v[-1] for k, v in parse_assignments(env, "-e").items()},
        runtime=runtime,
        pull_policy=pull_policy,
        reuse=reuse,
        config=config_path or "valohai.yaml",
        store=store,
        address=address,
    )
    sys.exit(_exit_status(record))


@click.command()
@click.argument("execution")
@click.option("--json", "as_json", is_flag=True, help="Print the new record as JSON on stdout.")
@config_option
@store_option
def rerun(execution: str, as_json: bool, config_path: str | None, store: str | None) -> None:
    """Run EXECUTION again with the same spec: image digest, inputs by checksum, code, parameters."""
    from sweeper import api

    record = _execution(
        api.rerun,
        as_json=as_json,
        execution=execution,
        config=config_path or "valohai.yaml",
        store=store,
    )
    sys.exit(_exit_status(record))


@click.command()
@click.argument("execution")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
@config_option
@store_option
def show(execution: str, as_json: bool, config_path: str | None, store: str | None) -> None:
    """Show one execution (an id, #counter or latest)."""
    from sweeper.api.verify import verification_lines

    opened = project_from(config_path, store).open_store()
    record = ExecutionRecord.from_dict(opened.find_execution(execution))
    if as_json:
        click.echo(json.dumps(record.to_dict(), indent=2, default=str))
    else:
        output.execution_details(record)
        for line in verification_lines(opened, record):  # "verified by #57: reproduced"
            click.echo(line)


@click.command()
@click.argument("execution")
@click.option("--follow", "-F", is_flag=True, help="Keep printing until the execution ends.")
@config_option
@store_option
def logs(execution: str, follow: bool, config_path: str | None, store: str | None) -> None:
    """Print the log of one execution."""
    opened = project_from(config_path, store).open_store()
    execution_id = ExecutionRecord.from_dict(opened.find_execution(execution)).id
    path = opened.log_file(execution_id)
    if path is None:  # a remote store: its log is uploaded when the execution ends
        text = opened.read_log(execution_id)
        if text is not None:
            click.echo(text, nl=False)
        return
    position = 0
    while True:
        if path.exists():
            with open(path, encoding="utf-8", errors="replace") as handle:
                handle.seek(position)
                chunk = handle.read()
                position = handle.tell()
            if chunk:
                sys.stdout.write(chunk)
                sys.stdout.flush()
        if not follow:
            return
        current = opened.get_record(execution_id)
        if current is not None and current.is_final:
            follow = False  # one more read: the lines written before the record was final
            continue
        time.sleep(0.3)


@click.command()
@click.argument("execution")
@click.option("-d", "--dir", "directory", metavar="DIR", help="Download the outputs into DIR.")
@click.option("--json", "as_json", is_flag=True, help="The outputs (with properties) as JSON.")
@config_option
@store_option
def outputs(
    execution: str,
    directory: str | None,
    as_json: bool,
    config_path: str | None,
    store: str | None,
) -> None:
    """List (or download with -d) the outputs of one execution."""
    opened = project_from(config_path, store).open_store()
    record = ExecutionRecord.from_dict(opened.find_execution(execution))
    rows = [[o["path"], str(o["size"]), o["uri"]] for o in record.outputs]
    if as_json:
        click.echo(json.dumps([dict(o) for o in record.outputs], default=str))
    else:
        output.table(["path", "size", "uri"], rows)
    if directory:
        root = Path(directory).resolve()
        for item in record.outputs:
            dest = (root / item["path"]).resolve()
            if not dest.is_relative_to(root):
                raise SweeperError(f"output path {item['path']} points outside {root}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            opened.fetch_blob(item["sha256"], dest)
        click.echo(f"{len(rows)} files written to {root}", err=True)


COMMANDS = [lint, steps, run, rerun, show, logs, outputs]
