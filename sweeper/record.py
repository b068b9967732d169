"""The record one execution leaves: :class:`ExecutionRecord`.

The record is what ``executions/<id>/execution.json`` holds and what one ``executions``
row is made from. :meth:`ExecutionRecord.from_dict` reads any record sweeper ever wrote (a
key it does not know is kept in ``extra``, a missing one takes its default) and
:meth:`ExecutionRecord.to_dict` writes it back key for key, so a record read and written
again is the same file.

>>> record = ExecutionRecord.from_dict({"id": "e1", "status": "complete", "metrics": {"loss": 0.5}})
>>> record.status is Status.COMPLETE, record.is_final
(True, True)
>>> record.objective_values(["loss"])
[0.5]
>>> ExecutionRecord.from_dict(record.to_dict()) == record
True

A failed execution says why in :attr:`ExecutionRecord.failure_kind`, set where the failure
is known (the runtime, the executor, recovery) instead of read back from a message later:

>>> failed = record.finished(Status.ERROR, error="exit code 137", ended_at="t",
...                          failure_kind=FailureKind.OOM)
>>> failed.to_dict()["failure_kind"], ExecutionRecord.from_dict(failed.to_dict()).failure_kind
('oom', <FailureKind.OOM: 'oom'>)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from typing import Any

from sweeper.status import Status

#: One metrics event of an execution: ``{"time": ISO string, "values": {name: value}}``.
MetricEvent = Mapping[str, Any]


class FailureKind(str, Enum):
    """Why an execution failed, decided where the failure happened.

    str-valued like :class:`Status`: ``execution.json``, the ``executions`` dataset and a
    trial's user attributes hold the plain text (``"oom"``), ``FailureKind.OOM == "oom"``
    and ``f"{FailureKind.OOM}"`` is ``oom``.

    - ``oom``: the OOM killer (exit code 137), or the step printed ``MemoryError`` or
      ``CUDA out of memory`` among its last lines;
    - ``time_limit``: the step's time limit;
    - ``no_output``: the step's no-output timeout;
    - ``infrastructure``: the machinery failed, not the step (the actor or its node died, the
      image or the code snapshot could not be had, the runtime broke);
    - ``user_error``: the step failed by itself (a non-zero exit, a bad input).
    """

    OOM = "oom"
    TIME_LIMIT = "time_limit"
    NO_OUTPUT = "no_output"
    INFRASTRUCTURE = "infrastructure"
    USER_ERROR = "user_error"

    # Formatted as its text, as a Status is (Python 3.11+ would write "FailureKind.OOM").
    __str__ = Status.__str__
    __format__ = Status.__format__


#: How many of a step's last output lines an out-of-memory line must be among to explain
#: its failure: one printed earlier was survived (a smaller batch tried after it, say).
OOM_LINES_BACK = 200
#: How many of the last bytes of its output, likewise (the end of the log the class of a
#: record written before the failure kind is read from).
OOM_BYTES_BACK = 16_384

# A line of the step's output that says it ran out of memory (Python's, PyTorch's, CUDA's).
_OOM_LINE = re.compile(r"\bMemoryError\b|CUDA out of memory|CUDA error: out of memory|OutOfMemory")


def says_out_of_memory(line: str) -> bool:
    """Whether a line the step printed says it ran out of memory.

    >>> says_out_of_memory("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate")
    True
    >>> says_out_of_memory("memory use: 3 GB")
    False
    """
    # "emory" is a substring of every match: a cheap test spares most lines the regex.
    return "emory" in line and _OOM_LINE.search(line) is not None


@dataclass(frozen=True)
class ResourceUse:
    """What one execution's step used; each figure None where it could not be told.

    ``cpu_s``: CPU time (user + system, seconds) of the step's processes; ``peak_memory_mb``:
    their peak memory (MiB); ``gpu_s``: GPU-seconds, the GPU share the execution held times
    its duration (0 for a step that asked for no GPU). How each runtime measures them:
    :class:`~sweeper.runtime.RunResult`.

    >>> ResourceUse.from_dict({"cpu_s": 1.5, "peak_memory_mb": None, "gpu_s": 0})
    ResourceUse(cpu_s=1.5, peak_memory_mb=None, gpu_s=0.0)
    """

    cpu_s: float | None = None
    peak_memory_mb: float | None = None
    gpu_s: float | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResourceUse:
        """From :meth:`to_dict`; raises TypeError for a figure that is not a number."""
        values = {}
        for name in ("cpu_s", "peak_memory_mb", "gpu_s"):
            value = data.get(name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float))
            ):
                raise TypeError(f"{name} is not a number")
            values[name] = None if value is None else float(value)
        return cls(**values)

    def to_dict(self) -> dict[str, float | None]:
        """The record's ``usage`` (and the executions row's columns of the same names)."""
        return {"cpu_s": self.cpu_s, "peak_memory_mb": self.peak_memory_mb, "gpu_s": self.gpu_s}


@dataclass(frozen=True)
class ExecutionRecord:
    """One execution as stored in ``executions/<id>/execution.json`` (and one executions row).

    The fields are the record's keys in the order they are written. ``inputs`` and
    ``outputs`` hold one mapping per file (``name``, ``uri``, ``path``, ``sha256``,
    ``size``, ``producer_execution_id``; an output with properties, its ``properties``);
    ``outputs_skipped`` one ``{path, reason}`` per entry of the outputs folder that was
    not stored. ``dataset_versions`` holds the versions the execution made (``uri``,
    ``name``, ``version``, ``files``: ``{path, sha256, size}``), ``warnings`` what it asked
    for and did not get (unusable output properties, a version that already exists). Times are ISO 8601 strings in UTC.
    ``failure_kind`` says why a failed execution failed (None for one that did not fail, and
    for records written before it existed; it is written only when set, so those records
    are written back as they were read). ``extra`` keeps the keys this version does not
    know, so that they are written back. Build changed copies with
    :func:`dataclasses.replace` or :meth:`finished`.
    """

    id: str
    counter: int | None = None
    step: str = ""
    status: Status = Status.CREATED
    exit_code: int | None = None
    error: str | None = None
    failure_kind: FailureKind | None = None
    command: tuple[str, ...] = ()
    image: str | None = None
    image_digest: str | None = None
    code_version: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    metrics_dropped: int = 0
    inputs: tuple[Mapping[str, Any], ...] = ()
    outputs: tuple[Mapping[str, Any], ...] = ()
    outputs_skipped: tuple[Mapping[str, Any], ...] = ()
    dataset_versions: tuple[Mapping[str, Any], ...] = ()
    warnings: tuple[str, ...] = ()
    created_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float | None = None
    #: What the step used (None for an execution whose step did not run, and in records
    #: written before it existed).
    usage: ResourceUse | None = None
    runtime: str = "local"
    reused_from: str | None = None
    #: A re-run by ``sweep verify``: ``{"execution": the id it verifies, "tolerance": its
    #: metrics' tolerance}`` (see :mod:`sweeper.execution.verification`).
    verifies: Mapping[str, Any] | None = None
    sweep_id: str | None = None
    trial_number: int | None = None
    pipeline_run_id: str | None = None
    node: str | None = None
    #: A member of a distributed task: its ``distributed.json`` (group, member id, members).
    distributed: Mapping[str, Any] | None = None
    ray_node: str | None = None
    gpu_ids: tuple[str, ...] = ()
    attempt: int = 1
    host: str | None = None
    spec_hash: str | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    resources: Mapping[str, Any] = field(default_factory=dict)
    spec: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExecutionRecord:
        """The record of a stored dict: missing keys take their defaults, unknown go to ``extra``.

        A value of an unexpected shape (a status this version does not know, ``null`` where
        a list is expected) is kept in ``extra`` under its own key, so :meth:`to_dict`
        writes back exactly what was read; the field keeps its default.
        """
        if "id" not in data:
            raise ValueError("an execution record needs an 'id'")
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for name in _KEYS:
            if name not in data:
                continue
            convert = _CONVERT.get(name)
            try:
                values[name] = data[name] if convert is None else convert(data[name])
            except (TypeError, ValueError):
                extra[name] = data[name]
        extra.update((key, value) for key, value in data.items() if key not in _FIELDS)
        return cls(**values, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """The record as stored: every key in field order, lists for tuples, then ``extra``.

        Keys of ``extra`` that are also fields (values of an unexpected shape, see
        :meth:`from_dict`) take the field's place, so the order is the one that was read.
        """
        data: dict[str, Any] = {}
        for name in _KEYS:
            value = getattr(self, name)
            if value in (None, ()) and name in _WRITTEN_WHEN_SET and name not in self.extra:
                continue
            if isinstance(value, Enum):
                value = value.value
            elif isinstance(value, ResourceUse):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = [dict(v) if isinstance(v, Mapping) else v for v in value]
            elif isinstance(value, Mapping):
                value = dict(value)
            data[name] = value
        data.update(self.extra)
        return data

    def finished(
        self,
        status: Status,
        *,
        error: str | None,
        ended_at: str,
        failure_kind: FailureKind | None = None,
        **changes: Any,
    ) -> ExecutionRecord:
        """A copy that ended with ``status`` (``error`` and ``failure_kind`` saying why it
        failed) at ``ended_at``, plus ``changes``."""
        return replace(
            self,
            status=status,
            error=error,
            failure_kind=failure_kind,
            ended_at=ended_at,
            **changes,
        )

    @property
    def group_id(self) -> str | None:
        """The distributed group this execution was a member of (None for other executions)."""
        return str(self.distributed["config"]["group_name"]) if self.distributed else None

    @property
    def member_id(self) -> str | None:
        """Its member id in that group (``"0"`` is rank 0), None outside a group."""
        return str(self.distributed["config"]["member_id"]) if self.distributed else None

    @property
    def is_final(self) -> bool:
        """Whether the execution has ended (it never changes again)."""
        return self.status.is_final and "status" not in self.extra

    def objective_values(self, metrics: Sequence[str]) -> list[float] | None:
        """The final values of ``metrics``, or None when one is missing or not a finite number."""
        return objective_values(self.metrics, metrics)


def objective_values(values: Mapping[str, Any], names: Sequence[str]) -> list[float] | None:
    """``values[name]`` for each of ``names`` as floats, or None when one is missing or not a
    finite number (what Optuna may be told for a trial)."""
    found = []
    for name in names:
        value = values.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if not math.isfinite(float(value)):
            return None
        found.append(float(value))
    return found


def guess_direction(metric: str) -> str:
    """``minimize`` for a metric named like a loss or an error (any case), else ``maximize``.

    The one guess for a sweep's ``--metric`` without ``--direction`` and for a pipeline
    task's ``optimization-target-metric``.

    >>> guess_direction("val_loss"), guess_direction("Error_rate"), guess_direction("accuracy")
    ('minimize', 'minimize', 'maximize')
    """
    lowered = metric.lower()
    return "minimize" if ("loss" in lowered or "error" in lowered) else "maximize"


def _sequence(value: Any) -> tuple[Any, ...]:
    if not isinstance(value, list):
        raise TypeError("not a list")
    return tuple(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError("not a mapping")
    return value


def _mappings(value: Any) -> tuple[Mapping[str, Any], ...]:
    items = _sequence(value)
    if not all(isinstance(item, Mapping) for item in items):
        raise TypeError("not a list of mappings")
    return items


def _strings(value: Any) -> tuple[str, ...]:
    items = _sequence(value)
    if not all(isinstance(item, str) for item in items):
        raise TypeError("not a list of strings")
    return items


_FIELDS = frozenset(f.name for f in fields(ExecutionRecord))
#: The stored keys, in the order they are written.
_KEYS = tuple(f.name for f in fields(ExecutionRecord) if f.name != "extra")
#: Fields added after records were first written: left out of :meth:`ExecutionRecord.to_dict`
#: while unset, so that a record of an earlier version is written back as it was read.
_WRITTEN_WHEN_SET = frozenset(
    {"failure_kind", "distributed", "dataset_versions", "warnings", "verifies", "usage"}
)
_CONVERT: dict[str, Callable[[Any], Any]] = {
    "status": Status,
    "failure_kind": FailureKind,
    "command": _sequence,
    "gpu_ids": _sequence,
    "inputs": _mappings,
    "outputs": _mappings,
    "outputs_skipped": _mappings,
    "dataset_versions": _mappings,
    "warnings": _strings,
    "parameters": _mapping,
    "metrics": _mapping,
    "environment": _mapping,
    "resources": _mapping,
    "spec": _mapping,
    "distributed": _mapping,
    "verifies": _mapping,
    "usage": lambda value: ResourceUse.from_dict(_mapping(value)),
}
