"""Why trials failed: one reason per failed execution, grouped, most common first.

A failed execution's reason is its record's ``error`` (``exit code 1``, ``time limit 60s``,
``crashed ...``) followed by the line of its log that says what went wrong: the last
Python exception line (``ValueError: learning rate must be positive``), else the last
non-empty line that is not a metric. Reasons that differ only in numbers, ids, hashes and
paths (the values that change from trial to trial) fall into one group::

    3 x exit code 1: ValueError: learning rate must be positive: -0.2 (e.g. 01JB...)

Each failure also has a class, which decides what the sweep does about it
(:func:`failure_class`). It is the record's :class:`~sweeper.record.FailureKind`, set where
the failure was known (the runtime, the executor, recovery), never read back from a message:

- ``oom``: exit code 137, the OOM killer, a ``MemoryError`` or ``CUDA out of memory`` line;
- ``time_limit``: the step's time limit or no-output timeout (a record's ``no_output`` kind
  is a time limit to the sweep);
- ``infrastructure``: the actor or its node died, the image could not be had;
- ``user_error``: anything else (a traceback, a non-zero exit, no metric printed).

Records written before the kind existed are classed from their messages and log by
:func:`legacy_failure_class`, the one place that still reads a class from text.

``oom`` and ``time_limit`` come from the resources a trial's parameters asked for: the
sweep tells them to Optuna as infeasible, so that TPE avoids the region; they do not count
towards ``--max-failures``. Infrastructure failures are retried; user errors stop the
sweep after ``--max-failures``.

The sweep engine computes each failed trial's reason and class when it hears of it and
keeps them in the trial (``reason``, ``failure_class`` user attributes), so ``sweep status``
and ``results.failures()`` group what the study already holds instead of reading every
log again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from sweeper.record import OOM_LINES_BACK, ExecutionRecord, FailureKind, says_out_of_memory
from sweeper.status import Status

if TYPE_CHECKING:
    from sweeper.store import RecordStore

#: How much of the end of a log is searched for the error line.
LOG_TAIL_BYTES = 16_384
#: Longest reason kept (a trial's user attributes live in the study's storage).
MAX_REASON_CHARS = 500
#: How many groups an error message names before it says how many more there are.
TOP_REASONS = 3

OOM = FailureKind.OOM
TIME_LIMIT = FailureKind.TIME_LIMIT
NO_OUTPUT = FailureKind.NO_OUTPUT
USER_ERROR = FailureKind.USER_ERROR
INFRASTRUCTURE = FailureKind.INFRASTRUCTURE
#: Every class :func:`failure_class` gives, in the order summaries list them (``no_output``
#: is a ``time_limit`` to the sweep).
FAILURE_CLASSES = (OOM, TIME_LIMIT, USER_ERROR, INFRASTRUCTURE)
#: Kinds caused by the resources a trial's parameters asked for: told to the sampler as
#: infeasible and not counted towards ``--max-failures``.
RESOURCE_CLASSES = frozenset({OOM, TIME_LIMIT, NO_OUTPUT})
#: The user attribute that holds a failed trial's class.
CLASS_ATTR = "failure_class"
#: The Optuna constraint a trial failed by its resources violates (1.0; unset otherwise).
CONSTRAINT = "resources"

# Errors of executions that never started their command because the machinery failed, in
# the words of records written before the failure kind (see legacy_failure_class).
_LEGACY_INFRA_ERROR = re.compile(
    r"cannot (?:pull|inspect) image|is not present on the Docker host|Docker|Ray actor|"
    r"node (?:died|was lost)|no longer in the store",
    re.IGNORECASE,
)

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
    failure_class: str = USER_ERROR.value

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` form."""
        return asdict(self)

    def __str__(self) -> str:
        example = f" (e.g. {self.example_execution_id})" if self.example_execution_id else ""
        # a user error is what a reason usually is; the other classes say what they are
        kind = "" if self.failure_class == USER_ERROR else f"{self.failure_class}: "
        return f"{self.count} x {kind}{self.reason}{example}"


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
    record: ExecutionRecord, *, reason: str | None = None, log_text: str = ""
) -> str:
    """One line saying why an execution failed.

    ``reason`` is what the sweep knows beyond the record (a metric never printed, a trial
    that crashed on every retry); else the record's ``error``, else its status. The log's
    error line is added unless the reason already holds it.
    """
    exit_code = record.exit_code
    base = str(
        reason or record.error or (f"exit code {exit_code}" if exit_code else record.status)
    ).strip()
    detail = error_line(log_text) if record.status != Status.COMPLETE and log_text else None
    text = f"{base}: {detail}" if detail and detail not in base else base
    return text[:MAX_REASON_CHARS]


def failure_class(record: ExecutionRecord, log_text: str = "") -> FailureKind:
    """The class of a failed execution: ``oom``, ``time_limit``, ``infrastructure`` or ``user_error``.

    The record's :attr:`~sweeper.record.ExecutionRecord.failure_kind`, whatever its
    messages say (``no_output`` is a ``time_limit`` to the sweep). An execution that
    completed, failed by the sweep (a metric it never printed), is a ``user_error``.
    ``log_text`` (the end of the log) serves only records written before the kind existed
    (see :func:`legacy_failure_class`).

    >>> failure_class(ExecutionRecord("e", status=Status.ERROR, failure_kind=OOM))
    <FailureKind.OOM: 'oom'>
    >>> failure_class(ExecutionRecord("e", status=Status.ERROR, failure_kind=NO_OUTPUT))
    <FailureKind.TIME_LIMIT: 'time_limit'>
    >>> failure_class(ExecutionRecord("e", status=Status.ERROR, error="Docker said no",
    ...                               failure_kind=USER_ERROR))
    <FailureKind.USER_ERROR: 'user_error'>
    """
    kind = record.failure_kind
    if kind is not None:
        return TIME_LIMIT if kind is NO_OUTPUT else kind
    if record.status is Status.COMPLETE:
        return USER_ERROR
    return legacy_failure_class(record, log_text)


def legacy_failure_class(record: ExecutionRecord, log_text: str = "") -> FailureKind:
    """The class of a failed execution recorded without a failure kind (before it existed),
    read from its status, exit code, error message and the end of its log.

    >>> def legacy(log: str = "", **fields: Any) -> FailureKind:
    ...     return legacy_failure_class(ExecutionRecord.from_dict({"id": "e", **fields}), log)
    >>> legacy(status="error", exit_code=137)
    <FailureKind.OOM: 'oom'>
    >>> legacy("Traceback ...\\nMemoryError", status="error", exit_code=1)
    <FailureKind.OOM: 'oom'>
    >>> legacy(status="error", error="time limit of 5s exceeded")
    <FailureKind.TIME_LIMIT: 'time_limit'>
    >>> legacy(status="crashed", error="the Ray actor running it died")
    <FailureKind.INFRASTRUCTURE: 'infrastructure'>
    >>> legacy("ValueError: bad lr", status="error", exit_code=1)
    <FailureKind.USER_ERROR: 'user_error'>
    """
    error = record.error or ""
    exit_code = record.exit_code
    if record.status is Status.CRASHED:
        return INFRASTRUCTURE
    if exit_code == 137 or "OOM killer" in error or "OOMKilled" in error:
        return OOM
    if any(says_out_of_memory(line) for line in log_text.splitlines()[-OOM_LINES_BACK:]):
        return OOM
    if error.startswith(("time limit", "no output for")):
        return TIME_LIMIT
    if exit_code is None and _LEGACY_INFRA_ERROR.search(error):
        return INFRASTRUCTURE
    return USER_ERROR


def tell_state(trial: Any, kind: str | None) -> Any:
    """The state to tell Optuna a failed trial of class ``kind`` ended in.

    ``oom`` and ``time_limit`` come back as an infeasible ``PRUNED`` trial: TPE ignores
    failed trials but ranks infeasible ones (a positive ``resources`` constraint, which
    Optuna keeps in the trial's system attrs) among the bad, so it proposes fewer points
    in their region. Pruned trials carry no value, so no plot or best sees a made-up one.
    Any other failure is ``FAIL``.
    """
    from optuna.trial import TrialState

    if kind in RESOURCE_CLASSES:
        trial.set_constraint(CONSTRAINT, 1.0)
        return TrialState.PRUNED
    return TrialState.FAIL


def reason_key(reason: str) -> str:
    """``reason`` with what differs per trial (numbers, ids, hashes, paths) replaced."""

    def replace(match: re.Match[str]) -> str:
        kind = match.lastgroup or "number"
        return match.group(0) if kind == "keep" else _PLACEHOLDERS[kind]

    return _VARYING.sub(replace, reason)


def group_reasons(
    failures: Iterable[tuple[str | None, str] | tuple[str | None, str, str]],
) -> list[FailureGroup]:
    """Group ``(execution_id, reason[, class])`` by class and :func:`reason_key`, most common first.

    Each group shows the reason and id of its first failure; ties keep first-seen order.
    """
    groups: dict[tuple[str, str], list[Any]] = {}
    for execution_id, reason, *rest in failures:
        kind = str(rest[0]) if rest else USER_ERROR.value
        entry = groups.setdefault((kind, reason_key(reason)), [reason, 0, execution_id, kind])
        entry[1] += 1
        if entry[2] is None:
            entry[2] = execution_id
    ordered = sorted(groups.values(), key=lambda entry: -entry[1])
    return [FailureGroup(reason, count, example, kind) for reason, count, example, kind in ordered]


def study_failures(study: Any) -> list[FailureGroup]:
    """The failed trials of a sweep's Optuna study (those counted as ``error``), grouped."""
    from optuna.trial import TrialState

    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL, TrialState.PRUNED)):
        # a pruned trial that failed is one told to the sampler as infeasible (oom, time_limit)
        default = Status.ERROR if trial.state == TrialState.FAIL else Status.PRUNED
        if trial.user_attrs.get("outcome", default) != Status.ERROR:
            continue  # crashed and retried, or interrupted and re-run: not a failed trial
        reason = trial.user_attrs.get("reason") or "failed without a recorded reason"
        kind = str(trial.user_attrs.get(CLASS_ATTR) or USER_ERROR)
        failed.append((trial.user_attrs.get("execution_id"), str(reason), kind))
    return group_reasons(failed)


def class_counts(groups: Iterable[FailureGroup]) -> dict[str, int]:
    """How many failed trials each class has, in :data:`FAILURE_CLASSES` order (none left out)."""
    counts = dict.fromkeys((kind.value for kind in FAILURE_CLASSES), 0)
    for group in groups:
        counts[group.failure_class] = counts.get(group.failure_class, 0) + group.count
    return counts


def describe(groups: list[FailureGroup], limit: int = TOP_REASONS) -> str:
    """The top groups on one line, for an error message."""
    text = "; ".join(str(group) for group in groups[:limit])
    more = len(groups) - limit
    return f"{text}; and {more} other reason{'s' if more > 1 else ''}" if more > 0 else text
