"""``sweep verify``: run an execution again from its record and say whether it reproduced."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from sweeper.cli.options import config_option, json_option, store_option
from sweeper.cli.output import format_value
from sweeper.cli.project import project_from
from sweeper.record import ExecutionRecord
from sweeper.status import Status

if TYPE_CHECKING:
    from sweeper.execution.verification import Check, Verification


def _shown(check: Check, value: object) -> str:
    if value is None:
        return "missing"
    if check.name.startswith("output."):
        return f"sha256:{str(value)[:12]}"
    return value if isinstance(value, str) else format_value(value)


def _report(found: Verification, counters: dict[str, int | None]) -> None:
    """The verification, one line per field, on stdout."""
    for check in found.checks:
        if check.equal:
            click.echo(f"  same     {check.name}: {_shown(check, check.expected)}")
        else:
            expected, got = _shown(check, check.expected), _shown(check, check.got)
            click.echo(f"  DIFFERS  {check.name}: {expected} then, {got} now")
    for note in found.not_held:
        click.echo(f"  not held equal: {note}")
    original, rerun = f"#{counters.get(found.original)}", f"#{counters.get(found.rerun)}"
    if found.reproduced:
        click.echo(f"{original} {found.original}: reproduced by {rerun} {found.rerun}")
    else:
        differing = ", ".join(check.name for check in found.differing)
        click.echo(
            f"{original} {found.original}: not reproduced by {rerun} {found.rerun} "
            f"({differing} differ)"
        )


@click.command()
@click.argument("target")
@click.option(
    "--sample",
    type=int,
    metavar="N",
    help="TARGET is a sweep: verify N of its complete trials, spread over its trial numbers.",
)
@click.option(
    "--tolerance",
    type=float,
    default=0.0,
    show_default=True,
    metavar="X",
    help="Metrics agree within X, absolute or relative to the larger value (default: exactly).",
)
@json_option("The verification (with --sample, a list of them) as JSON on stdout.")
@config_option
@store_option
def verify(
    target: str,
    sample: int | None,
    tolerance: float,
    as_json: bool,
    config_path: str | None,
    store: str | None,
) -> None:
    """Run an execution again from its record and compare, field by field; 0 when it reproduced."""
    from sweeper.api.verify import verify as verify_execution
    from sweeper.api.verify import verify_sweep

    counters: dict[str, int | None] = {}

    def echo(line: str) -> None:  # the step's log: stdout is the report's
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def on_record(record: ExecutionRecord) -> None:
        counters[record.id] = record.counter
        if record.status == Status.STARTED:
            click.echo(f"sweep: verifying by re-running as #{record.counter} {record.id}", err=True)

    config = config_path or "valohai.yaml"
    if sample is None:
        results = [
            verify_execution(
                target, tolerance=tolerance, config=config, store=store, echo=echo,
                on_record=on_record,
            )
        ]  # fmt: skip
    else:
        results = verify_sweep(
            target, sample=sample, tolerance=tolerance, config=config, store=store, echo=echo,
            on_record=on_record,
        )  # fmt: skip
    opened = project_from(config_path, store).open_store()
    for found in results:
        original = opened.get_record(found.original)
        counters[found.original] = original.counter if original else None
    if as_json:
        found_json = [found.to_dict() for found in results]
        click.echo(json.dumps(found_json if sample else found_json[0], indent=2, default=str))
    else:
        for found in results:
            _report(found, counters)
    sys.exit(0 if all(found.reproduced for found in results) else 1)


COMMANDS = [verify]
