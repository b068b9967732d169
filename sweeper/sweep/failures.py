"""Why trials failed: one reason per failed execution, grouped, most common first.

A failed execution's reason is its record's ``error`` (``exit code 1``, ``time limit 60s``,
``crashed ...``) followed by the line of its log that says what went wrong: the last
Python exception line (``ValueError: learning rate must be positive``), else the last
non-empty line that is not a metric. Reasons that differ only in numbers, ids, hashes and
paths (the values that change from trial to trial) fall into one group::

    3 x exit code 1: ValueError: learning rate must be positive: -0.2 (e.g. 01JB...)

The sweep engine computes each failed trial's reason when it hears of it and keeps it in
the trial (``reason`` user attribute), so ``sweep status`` and ``results.failures()``
group what the study already holds instead of reading every log again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sweeper.store import RecordStore

#: How much of the end of a log is searched for the error line.
LOG_TAIL_BYTES = 16_384
#: Longest reason kept (a trial's user attributes live in the study's storage).
MAX_REASON_CHARS = 500
#: How many groups an error message names before it says how many more there are.
TOP_REASONS = 3

# `SomeError: message`, `pkg.mod.SomeError`, `KeyboardInterrupt`: what Python prints last.
_EXCEPTION_LINE = re.compile(
    r"^(?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt|Fault)\b(?::.*)?$"
)
# What varies between trials failing for one cause. The exit code is part of the cause, so
# it is matched first and kept as it is.
_VARYING = re.compile(
    r"(?P<keep>exit code -?\d+)"
    r"|(?P<uuid>\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b)"
    r"|(?P<ulid>\b[0-9A-HJKMNP-TV-Z]{26}\b)"
    r"|(?P<hex>\b(?:0x)?[0-9a-fA-F]{12,}\b)"
    r"|(?P<path>(?:[A-Za-z]:)?(?:~|\.{1,2})?(?:[/\\][\w.@+-]+)+[/\\]?)"
    r"|(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|\b(?:nan|inf|NaN|Inf)\b)"
)
_PLACEHOLDERS = {"uuid": "<id>", "ulid": "<id>", "hex": "<hex>", "path": "<path>", "number": "<n>"}


@dataclass(frozen=True)
class FailureGroup:
    """Failed trials that share one reason: how many, and one of their execution ids."""

    reason: str
    count: int
    example_execution_id: str | None

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` form."""
        return asdict(self)

    def __str__(self) -> str:
        example = f" (e.g. {self.example_execution_id})" if self.example_execution_id else ""
        return f"{self.count} x {self.reason}{example}"


def error_line(log_text: str) -> str | None:
    """The line of a log that says what went wrong, or None.

    The last Python exception line wins (a traceback ends with it); without one, the last
    non-empty line that is neither a metric (a JSON object) nor sweeper's own note.
    """
    last: str | None = None
    for raw in reversed(log_text.splitlines()):
        line = raw.strip()
        if not line:
            continue
        if _EXCEPTION_LINE.match(line):
            return line
        if last is None and not line.startswith(("{", "sweeper: ")):
            last = line
    return last


def read_log_tail(store: RecordStore, execution_id: str, max_bytes: int = LOG_TAIL_BYTES) -> str:
    """The end of an execution's log ("" when it has none)."""
    return store.read_log(execution_id, tail_bytes=max_bytes) or ""


def failure_reason(
    record: Mapping[str, Any], *, reason: str | None = None, log_text: str = ""
) -> str:
    """One line saying why an execution failed.

    ``reason`` is what the sweep knows beyond the record (a metric never printed, a trial
    that crashed on every retry); else the record's ``error``, else its status. The log's
    error line is added unless the reason already holds it.
    """
    status = str(record.get("status") or "error")
    exit_code = record.get("exit_code")
    base = str(
        reason or record.get("error") or (f"exit code {exit_code}" if exit_code else status)
    ).strip()
    detail = error_line(log_text) if status != "complete" and log_text else None
    text = f"{base}: {detail}" if detail and detail not in base else base
    return text[:MAX_REASON_CHARS]


def reason_key(reason: str) -> str:
    """``reason`` with what differs per trial (numbers, ids, hashes, paths) replaced."""

    def replace(match: re.Match[str]) -> str:
        kind = match.lastgroup or "number"
        return match.group(0) if kind == "keep" else _PLACEHOLDERS[kind]

    return _VARYING.sub(replace, reason)


def group_reasons(failures: Iterable[tuple[str | None, str]]) -> list[FailureGroup]:
    """Group ``(execution_id, reason)`` pairs by :func:`reason_key`, most common first.

    Each group shows the reason and id of its first failure; ties keep first-seen order.
    """
    groups: dict[str, list[Any]] = {}
    for execution_id, reason in failures:
        entry = groups.setdefault(reason_key(reason), [reason, 0, execution_id])
        entry[1] += 1
        if entry[2] is None:
            entry[2] = execution_id
    ordered = sorted(groups.values(), key=lambda entry: -entry[1])
    return [FailureGroup(reason, count, example) for reason, count, example in ordered]


def study_failures(study: Any) -> list[FailureGroup]:
    """The failed trials of a sweep's Optuna study (those counted as ``error``), grouped."""
    from optuna.trial import TrialState

    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        if trial.user_attrs.get("outcome", "error") != "error":
            continue  # crashed and retried, or interrupted and re-run: not a failed trial
        reason = trial.user_attrs.get("reason") or "failed without a recorded reason"
        failed.append((trial.user_attrs.get("execution_id"), str(reason)))
    return group_reasons(failed)


def describe(groups: list[FailureGroup], limit: int = TOP_REASONS) -> str:
    """The top groups on one line, for an error message."""
    text = "; ".join(str(group) for group in groups[:limit])
    more = len(groups) - limit
    return f"{text}; and {more} other reason{'s' if more > 1 else ''}" if more > 0 else text


def sweep_failures(store: RecordStore, sweep_id: str) -> list[FailureGroup]:
    """The failed trials of a sweep in ``store``, grouped by reason, most common first."""
    from sweeper.errors import StoreError
    from sweeper.sweep.state import load_study

    saved = store.get_sweep(sweep_id)
    if not saved:
        raise StoreError(f'unknown sweep "{sweep_id}" in {store.location}')
    storage = (saved.get("options") or {}).get("storage")
    return study_failures(load_study(store, sweep_id, storage))
