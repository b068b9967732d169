"""Every status sweeper writes, as one enum.

``Status`` is a ``str`` enum, so a status compares equal to its text (``Status.COMPLETE ==
"complete"``) and JSON, Parquet and older records are unchanged. The sets of statuses that
mean something (final, counted towards ``--trials``, a finished pipeline node) are defined
once here.

>>> Status.COMPLETE == "complete"
True
>>> Status("error").is_final
True
>>> f"{Status.PRUNED}"
'pruned'
"""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    """Every status sweeper writes. str-valued: JSON, Parquet and ``== "complete"`` are unchanged."""

    # An execution on its way.
    CREATED = "created"
    QUEUED = "queued"
    STARTED = "started"
    # How an execution ended.
    COMPLETE = "complete"
    ERROR = "error"
    STOPPED = "stopped"
    CRASHED = "crashed"
    PRUNED = "pruned"
    # Pipeline nodes and sweep trials.
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    SKIPPED = "skipped"
    # How a sweep or pipeline run ended.
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    def __str__(self) -> str:
        # Python 3.11+ formats a mixed-in enum as "Status.COMPLETE"; messages want the text.
        return self.value

    def __format__(self, format_spec: str) -> str:
        return format(self.value, format_spec)

    @property
    def is_final(self) -> bool:
        """Whether an execution in this status never changes again."""
        return self in _FINAL

    @classmethod
    def final(cls) -> frozenset[Status]:
        """Statuses after which an execution never changes again."""
        return _FINAL

    @classmethod
    def counted(cls) -> frozenset[Status]:
        """Execution outcomes that count towards a sweep's ``--trials``."""
        return _COUNTED

    @classmethod
    def node_final(cls) -> frozenset[Status]:
        """Statuses of a pipeline node that is done, one way or another."""
        return _NODE_FINAL


# An Enum body cannot hold these as attributes (they would become members).
_FINAL = frozenset({Status.COMPLETE, Status.ERROR, Status.STOPPED, Status.CRASHED, Status.PRUNED})
_COUNTED = frozenset({Status.COMPLETE, Status.ERROR, Status.PRUNED})
_NODE_FINAL = frozenset({Status.COMPLETE, Status.ERROR, Status.STOPPED, Status.SKIPPED})
