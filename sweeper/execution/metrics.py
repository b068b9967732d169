"""Valohai's metadata rule: every stdout line that is a JSON object is a metrics event.

The latest value of each key is the execution's summary; a NaN or an infinity never
replaces a finite number there (the event keeps it). Lines that are not JSON never fail the
run. A line that looks like an object (``{...}``) but cannot be used (invalid JSON, too
long, nested deeper than :data:`MAX_METRIC_DEPTH`) is skipped and counted as dropped, as
are events beyond a per-second cap, instead of growing memory without bound.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sweeper.record import ExecutionRecord

if TYPE_CHECKING:
    from sweeper.store import RecordStore

MAX_METRIC_LINE_BYTES = 256 * 1024
#: How deep a metrics event may nest (the event object itself is level 1). Everything
#: downstream (the record's JSON, Parquet rows, Ray's pickling, ``sweep show``) walks values
#: recursively, so a deeper value is refused here, once, rather than crash one of them.
MAX_METRIC_DEPTH = 32


class UnusableMetricLine(ValueError):
    """A line that looks like a metrics event (``{...}``) but cannot be used."""


def parse_metric_line(line: str) -> dict[str, Any] | None:
    """Return the JSON object a line holds, or None when the line is not one (or unusable)."""
    try:
        return read_metric_line(line)
    except UnusableMetricLine:
        return None


def read_metric_line(line: str) -> dict[str, Any] | None:
    """Return the JSON object a line holds, or None when the line is not one.

    Raises :class:`UnusableMetricLine` for a line that looks like an object but is invalid
    JSON, longer than :data:`MAX_METRIC_LINE_BYTES` or nested deeper than
    :data:`MAX_METRIC_DEPTH`.
    """
    text = line.strip()
    if not text.startswith("{") or not text.endswith("}"):
        return None
    if len(text) > MAX_METRIC_LINE_BYTES:
        raise UnusableMetricLine(f"longer than {MAX_METRIC_LINE_BYTES} bytes")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise UnusableMetricLine("not valid JSON") from exc
    if not isinstance(value, dict):
        return None
    if nesting_depth(value) > MAX_METRIC_DEPTH:
        raise UnusableMetricLine(f"nested deeper than {MAX_METRIC_DEPTH} levels")
    return value


def nesting_depth(value: Any) -> int:
    """How many containers deep ``value`` nests (0 for a scalar); iterative, so any depth."""
    deepest = 0
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_METRIC_DEPTH:
            return deepest  # deep enough to refuse: no need to walk the rest
        pending.extend((child, depth + 1) for child in children)
    return deepest


def json_safe(value: Any) -> Any:
    """Turn NaN and infinities into strings so records stay valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def _non_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _finite_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool) and not _non_finite(value)
    )


@dataclass
class MetricsCollector:
    """Collects metrics events in order, keeps the latest value per key, caps the rate."""

    max_events_per_second: int = 1000
    events: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    dropped: int = 0
    _window_start: float = 0.0
    _window_count: int = 0

    def feed(self, line: str) -> dict[str, Any] | None:
        """Parse one output line; return the event it produced, if any."""
        try:
            values = read_metric_line(line)
        except UnusableMetricLine:
            self.dropped += 1
            return None
        if values is None:
            return None
        now = time.monotonic()
        if now - self._window_start >= 1.0:
            self._window_start, self._window_count = now, 0
        self._window_count += 1
        if self._window_count > self.max_events_per_second:
            self.dropped += 1
            return None
        event = {
            "seq": len(self.events),
            "time": datetime.now(timezone.utc).isoformat(),
            "values": json_safe(values),
        }
        self.events.append(event)
        for key, value in event["values"].items():
            # A diverged step's NaN is in the event; the summary keeps the last real number.
            if not (_non_finite(values.get(key)) and _finite_number(self.summary.get(key))):
                self.summary[key] = value
        return event

    def series(self, key: str) -> list[float]:
        """The numeric values of one key, in the order they were printed."""
        out = []
        for event in self.events:
            value = event["values"].get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out.append(float(value))
        return out


def events_from_log(text: str) -> list[dict[str, Any]]:
    """The metrics events of a saved log (when the events held in memory were lost).

    The log keeps every output line, so this gives the events the execution printed, in
    order; only their times are those of the reading.
    """
    collector = MetricsCollector(max_events_per_second=2**62)
    for line in text.splitlines():
        collector.feed(line)
    return collector.events


def record_missing_rows(store: RecordStore, record: ExecutionRecord) -> None:
    """Finish the Parquet rows of a finished execution whose writer was killed midway.

    ``execution.json`` is written final before the rows; a writer killed in between (a
    killed driver, a lost node) leaves a finished record without its executions row and
    maybe without its metrics. This writes what is missing, the metrics events from the log
    (read only when the rows are really missing: the events are produced lazily).
    """
    execution_id = record.id

    def logged_events() -> Iterator[dict[str, Any]]:
        yield from events_from_log(store.read_log(execution_id) or "")

    store.complete_rows(record, logged_events())
