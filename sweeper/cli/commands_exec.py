"""Commands about the configuration and single executions: lint, steps, run, show, logs..."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import yaml

from sweeper.cli import output
from sweeper.cli.options import (
    config_option,
    env_option,
    json_option,
    pull_option,
    runtime_option,
    store_option,
)
from sweeper.cli.project import Project, project_from
from sweeper.config import lint_file, parse_config
from sweeper.errors import SweeperError
from sweeper.execution.spec import ExecutionSpec, build_spec, parse_assignments

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


def _run_with_ctrl_c(func: Callable[[StopToken], dict[str, Any]]) -> dict[str, Any]:
    """Run ``func`` in a thread so that Ctrl-C stops the execution cleanly instead of killing it."""
    from sweeper.execution.runner import StopToken

    stop = StopToken()
    result: dict[str, Any] = {}
    failure: list[BaseException] = []
    done = threading.Event()

    def target() -> None:
        try:
            result.update(func(stop))
        except BaseException as exc:  # re-raised in the main thread below
            failure.append(exc)
        finally:
            done.set()

    # Waiting on an Event, not Thread.join: an interrupted join can return early.
    threading.Thread(target=target, name="sweeper-execution", daemon=True).start()
    try:
        while not done.wait(0.2):
            pass
    except KeyboardInterrupt:
        click.echo("sweep: stopping the execution (Ctrl-C again to force)...", err=True)
        stop.stop("stopped")
        done.wait()
    if failure:
        raise failure[0]
    return result


def _exit_status(record: dict[str, Any]) -> int:
    if record.get("status") == "complete":
        return 0
    code = record.get("exit_code")
    return code if isinstance(code, int) and 0 < code < 256 else 1


def execute_spec(
    project: Project, spec: ExecutionSpec, *, as_json: bool, reuse: bool
) -> dict[str, Any]:
    """Run one spec in this process, streaming its log, and print the record."""
    from sweeper.execution.runner import Executor
    from sweeper.runtime import get_runtime

    store = project.open_store(create=True)
    executor = Executor(store, get_runtime(spec.runtime))
    stream = sys.stderr if as_json else sys.stdout

    def echo(line: str) -> None:
        stream.write(line + "\n")
        stream.flush()

    def on_record(record: dict[str, Any]) -> None:
        if record["status"] == "started":
            click.echo(
                f"sweep: execution #{record['counter']} {record['id']} ({spec.step})", err=True
            )

    record = _run_with_ctrl_c(
        lambda stop: executor.execute(
            spec, reuse=reuse, stop=stop, echo=echo, on_record=on_record, raise_bad_input=True
        )
    )
    if as_json:
        click.echo(json.dumps(record, indent=2, default=str))
    else:
        output.execution_summary(record)
    return record


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
    config_path: str | None,
    store: str | None,
) -> None:
    """Run one execution of STEP and exit with its status (0 when complete)."""
    project = project_from(config_path, store)
    step_obj = project.config.get_step(step)
    values = step_obj.parse_parameter_values(parse_assignments(params, "-p"))
    if dry_run:
        for command in step_obj.build_command(values):
            click.echo(command)
        return
    from sweeper.execution.inputs import resolve_inputs

    uris = resolve_inputs(
        step_obj.inputs, parse_assignments(inputs, "--input"), project_dir=project.directory
    )
    environment = {k: v[-1] for k, v in parse_assignments(env, "-e").items()}
    opened = project.open_store(create=True)
    version, archive = project.snapshot_code(opened)
    spec = build_spec(
        step_obj,
        parameters=values,
        inputs=uris,
        code_version=version,
        code_archive=archive,
        project_dir=str(project.directory),
        runtime=runtime,
        environment=environment,
        pull_policy=pull_policy,
    )
    record = execute_spec(project, spec, as_json=as_json, reuse=reuse)
    sys.exit(_exit_status(record))


def _step_from_record(record: dict[str, Any]) -> Any:
    definition = record.get("spec", {}).get("step_definition")
    if not definition:
        raise SweeperError(f"execution {record['id']} has no step definition to re-run")
    config = parse_config(
        yaml.safe_dump([{"step": definition}], sort_keys=False),
        filename=f"execution {record['id']}",
    )
    return next(iter(config.steps.values()))


@click.command()
@click.argument("execution")
@click.option("--json", "as_json", is_flag=True, help="Print the new record as JSON on stdout.")
@config_option
@store_option
def rerun(execution: str, as_json: bool, config_path: str | None, store: str | None) -> None:
    """Run EXECUTION again with the same spec: image digest, inputs by checksum, code, parameters."""
    project = project_from(config_path, store)
    opened = project.open_store()
    record = opened.find_execution(execution)
    spec_data = record.get("spec") or {}
    step_obj = _step_from_record(record)
    if spec_data.get("code_archive") and not opened.has_blob(spec_data["code_archive"]):
        raise SweeperError(
            f"execution {record['id']} cannot be re-run: its code snapshot is no longer in the store"
        )
    inputs: dict[str, list[str]] = {}
    for item in record.get("inputs", []):
        uri = f"datum://{item['sha256']}" if opened.has_blob(item["sha256"]) else item["uri"]
        inputs.setdefault(item["name"], []).append(uri)
    image = record.get("image_digest") or spec_data.get("image")
    if spec_data.get("runtime") == "docker" and image:
        from sweeper.runtime import get_runtime

        step_runtime = get_runtime("docker")
        step_runtime.resolve_image(image, "never")
    spec = ExecutionSpec(
        step=record["step"],
        step_definition=spec_data.get("step_definition", {}),
        image=image if spec_data.get("runtime") == "docker" else spec_data.get("image"),
        commands=tuple(spec_data.get("commands") or record.get("command") or ()),
        parameters=dict(record.get("parameters") or {}),
        inputs={k: tuple(v) for k, v in inputs.items()},
        environment={k: v for k, v in (spec_data.get("environment") or {}).items() if v != "****"},
        code_version=record.get("code_version") or "",
        code_archive=spec_data.get("code_archive"),
        project_dir=str(project.directory),
        runtime=spec_data.get("runtime") or record.get("runtime") or "local",
        cpus=spec_data.get("cpus"),
        memory_mb=spec_data.get("memory_mb"),
        gpus=float(spec_data.get("gpus") or 0),
        time_limit_s=spec_data.get("time_limit_s"),
        no_output_timeout_s=spec_data.get("no_output_timeout_s"),
        pull_policy="never",
        mounts=tuple((m[0], m[1], bool(m[2])) for m in spec_data.get("mounts") or ()),
        step_inputs=tuple(step_obj.inputs),
    )
    new = execute_spec(project, spec, as_json=as_json, reuse=False)
    for old, now in zip(record.get("inputs", []), new.get("inputs", []), strict=False):
        if old["sha256"] != now["sha256"]:
            raise SweeperError(
                f'input "{old["name"]}" changed since {record["id"]}: {old["uri"]} has a different checksum'
            )
    sys.exit(_exit_status(new))


@click.command()
@click.argument("execution")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
@config_option
@store_option
def show(execution: str, as_json: bool, config_path: str | None, store: str | None) -> None:
    """Show one execution (an id, #counter or latest)."""
    record = project_from(config_path, store).open_store().find_execution(execution)
    if as_json:
        click.echo(json.dumps(record, indent=2, default=str))
    else:
        output.execution_details(record)


@click.command()
@click.argument("execution")
@click.option("--follow", "-F", is_flag=True, help="Keep printing until the execution ends.")
@config_option
@store_option
def logs(execution: str, follow: bool, config_path: str | None, store: str | None) -> None:
    """Print the log of one execution."""
    from sweeper.execution.runner import FINAL_STATUSES

    opened = project_from(config_path, store).open_store()
    record = opened.find_execution(execution)
    relpath = f"{opened.execution_dir(record['id'])}/logs.txt"
    local = opened.local_path
    if local is None:
        text = opened.read_text(relpath)
        if text is not None:
            click.echo(text, nl=False)
        return
    path = Path(local) / relpath
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
        current = opened.read_json(f"{opened.execution_dir(record['id'])}/execution.json") or {}
        if current.get("status") in FINAL_STATUSES:
            follow = False
            continue
        time.sleep(0.3)


@click.command()
@click.argument("execution")
@click.option("-d", "--dir", "directory", metavar="DIR", help="Download the outputs into DIR.")
@config_option
@store_option
def outputs(
    execution: str, directory: str | None, config_path: str | None, store: str | None
) -> None:
    """List (or download with -d) the outputs of one execution."""
    opened = project_from(config_path, store).open_store()
    record = opened.find_execution(execution)
    rows = [[o["path"], str(o["size"]), o["uri"]] for o in record.get("outputs", [])]
    output.table(["path", "size", "uri"], rows)
    if directory:
        root = Path(directory).resolve()
        for item in record.get("outputs", []):
            dest = (root / item["path"]).resolve()
            if not dest.is_relative_to(root):
                raise SweeperError(f"output path {item['path']} points outside {root}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            opened.fetch_blob(item["sha256"], dest)
        click.echo(f"{len(rows)} files written to {root}", err=True)


COMMANDS = [lint, steps, run, rerun, show, logs, outputs]
