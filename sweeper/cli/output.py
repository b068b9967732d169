"""Tables, records and progress as people read them (rich on a terminal, plain otherwise)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from sweeper.record import ExecutionRecord

    stdout: Console
    stderr: Console


def _console(name: str) -> Console:
    """The rich console ``stdout`` or ``stderr`` of this module, made on first use.

    rich takes ~60 ms to import, which commands that print no table (lint, run --dry-run)
    should not pay.
    """
    made = globals().get(name)
    if made is None:
        from rich.console import Console

        to_stderr = name == "stderr"
        stream = sys.stderr if to_stderr else sys.stdout
        # Off a terminal (pipes, files, CI logs) tables keep their natural width, not wrapping.
        made = Console(stderr=to_stderr, soft_wrap=True, width=None if stream.isatty() else 1000)
        globals()[name] = made
    return made


def __getattr__(name: str) -> Any:
    if name in ("stdout", "stderr"):
        return _console(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    title: str | None = None,
    console: Console | None = None,
) -> None:
    """Print rows as a table."""
    from rich.table import Table

    view = Table(title=title, show_lines=False, header_style="bold")
    for header in headers:
        view.add_column(str(header), overflow="fold")
    for row in rows:
        view.add_row(*("" if v is None else str(v) for v in row))
    (console or _console("stdout")).print(view)


def format_value(value: Any) -> str:
    """A short human form of a parameter or metric value."""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def execution_summary(record: ExecutionRecord) -> None:
    """One paragraph about a finished execution (on stderr, after its log)."""
    metrics = ", ".join(f"{k}={format_value(v)}" for k, v in record.metrics.items())
    line = f"execution #{record.counter} {record.id}: {record.status}"
    if record.duration_s is not None:
        line += f" in {record.duration_s:.2f}s"
    if record.reused_from:
        line += f" (reused {record.reused_from})"
    if record.error:
        line += f" ({record.error})"
    console = _console("stderr")
    console.print(line, highlight=False)
    if metrics:
        console.print(f"  metrics: {metrics}", highlight=False)
    used = resource_use(record)
    if used:
        console.print(f"  resources: {used}", highlight=False)
    for item in record.outputs:
        console.print(f"  output: {item['path']} {item['size']} B {item['uri']}", highlight=False)
    for item in record.outputs_skipped:
        console.print(f"  output skipped: {item['path']} ({item['reason']})", highlight=False)


def resource_use(record: ExecutionRecord) -> str:
    """What an execution used, in words (the figures it has): ``cpu 1.52 s, peak memory
    210.5 MB``; the GPU-seconds of one that held a GPU)."""
    usage = record.usage
    parts = []
    if usage is not None and usage.cpu_s is not None:
        parts.append(f"cpu {usage.cpu_s:.2f} s")
    if usage is not None and usage.peak_memory_mb is not None:
        parts.append(f"peak memory {usage.peak_memory_mb:.1f} MB")
    if usage is not None and usage.gpu_s:
        parts.append(f"gpu {usage.gpu_s:.2f} s")
    return ", ".join(parts)


#: The record's fields :func:`execution_details` shows first, one row each (when set).
DETAIL_FIELDS = (
    "id",
    "counter",
    "step",
    "status",
    "exit_code",
    "error",
    "runtime",
    "image",
    "image_digest",
    "code_version",
    "created_at",
    "started_at",
    "ended_at",
    "duration_s",
    "sweep_id",
    "trial_number",
    "pipeline_run_id",
    "node",
    "attempt",
    "reused_from",
    "gpu_ids",
    "spec_hash",
)


def execution_details(record: ExecutionRecord) -> None:
    """The record of one execution as a two-column table."""
    rows: list[list[Any]] = []
    for key in DETAIL_FIELDS:
        value = getattr(record, key)
        if value not in (None, (), ""):
            rows.append([key, format_value(list(value) if isinstance(value, tuple) else value)])
    if record.usage is not None:
        used = record.usage.to_dict().items()
        rows.extend([name, format_value(v)] for name, v in used if v is not None)
    rows.append(["command", "\n".join(record.command)])
    rows.extend([f"param.{name}", format_value(v)] for name, v in record.parameters.items())
    rows.extend([f"metric.{name}", format_value(v)] for name, v in record.metrics.items())
    rows.extend([f"env.{name}", value] for name, value in record.environment.items())
    for item in record.inputs:
        rows.append(
            [
                f"input.{item['name']}",
                f"{item['path']} {item['size']} B sha256:{item['sha256'][:12]} <- {item['uri']}",
            ]
        )
    for item in record.outputs:
        properties = (
            f"\nproperties {format_value(item['properties'])}" if "properties" in item else ""
        )
        rows.append([f"output.{item['path']}", f"{item['size']} B {item['uri']}{properties}"])
    for made in record.dataset_versions:
        rows.append(["dataset_version", f"{made['uri']} ({len(made['files'])} files)"])
    rows.extend(["warning", text] for text in record.warnings)
    for item in record.outputs_skipped:
        rows.append([f"output.{item['path']}", f"skipped: {item['reason']}"])
    table(["field", "value"], rows)


class SweepProgress:
    """A live bar: done/total, running, failed, pruned, best value and ETA (on stderr)."""

    def __init__(self, total: int, *, enabled: bool = True) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.enabled = enabled and sys.stderr.isatty()
        self.plain = enabled and not self.enabled
        self._last_plain = 0.0
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=_console("stderr"),
            transient=False,
        )
        self.task = self.progress.add_task("sweep", total=total, status="")

    def __enter__(self) -> SweepProgress:
        if self.enabled:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.progress.stop()

    def update(self, done: int, counts: dict[str, int], best: Any, forecast: Any = None) -> None:
        """Show the latest counts, and the forecast's time left (``forecast.short()``)."""
        best_text = format_value(best) if best is not None else "-"
        status = (
            f"running {counts.get('running', 0)}  failed {counts.get('error', 0)}  "
            f"pruned {counts.get('pruned', 0)}  best {best_text}"
        )
        if forecast is not None:
            status = f"{forecast.short()}  {status}"
        if self.enabled:
            self.progress.update(self.task, completed=done, status=status)
        elif self.plain and (
            time.monotonic() - self._last_plain > 5 or done == self.progress.tasks[0].total
        ):
            self._last_plain = time.monotonic()
            _console("stderr").print(
                f"sweep: {done}/{self.progress.tasks[0].total} done · {status}", highlight=False
            )
