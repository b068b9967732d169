"""Dataset rows held in memory and written as one part per dataset, on a short timer.

A sweep's actor finishes an execution every few tens of milliseconds; one Parquet part per
dataset per execution costs a file, an fsync and a rename each time and leaves thousands of
parts for every reader to open. With a :class:`RowBuffer` the rows of the executions an
actor finished in the last ``interval_s`` seconds go out together, metrics and artifacts
before executions (so an execution visible in ``executions`` has its other rows too).

What a ``kill -9`` takes with it is only rows: ``execution.json``, the truth, is written
(and fsynced) before an execution's rows are buffered, and recovery rebuilds the missing
rows from it (:func:`sweeper.cluster.recovery.restore_rows`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

#: Datasets in the order they are written: ``executions`` last.
ORDER = ("metrics", "artifacts", "dataset_versions", "executions")
#: A flush happens at once when this many executions are waiting (bounds memory).
MAX_EXECUTIONS = 1000


class RowBuffer:
    """Rows waiting to be written; flushed ``interval_s`` after the first one, and on demand.

    ``write(dataset, rows)`` publishes one part; it runs outside the buffer's lock, and two
    flushes never run at once (the second waits), so parts keep the order of the rows.
    """

    def __init__(
        self, write: Callable[[str, Sequence[Mapping[str, Any]]], None], interval_s: float
    ) -> None:
        self._write = write
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._rows: dict[str, list[Mapping[str, Any]]] = {name: [] for name in ORDER}
        self._executions = 0
        self._timer: threading.Timer | None = None
        self.flushes = 0

    def add(self, rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        """Hold one execution's rows (by dataset); flush when the buffer is full."""
        with self._lock:
            for name in ORDER:
                self._rows[name].extend(rows.get(name, ()))
            self._executions += 1
            full = self._executions >= MAX_EXECUTIONS
            if not full and self._timer is None:
                self._timer = threading.Timer(self.interval_s, self.flush)
                self._timer.daemon = True
                self._timer.start()
        if full:
            self.flush()

    @property
    def pending(self) -> int:
        """How many executions' rows are waiting."""
        with self._lock:
            return self._executions

    def flush(self) -> None:
        """Write every waiting row now: one part per dataset that has rows."""
        with self._flushing:
            with self._lock:
                rows, self._rows = self._rows, {name: [] for name in ORDER}
                self._executions = 0
                timer, self._timer = self._timer, None
            if timer is not None and timer is not threading.current_thread():
                timer.cancel()
            written: list[str] = []
            try:
                for name in ORDER:
                    if rows[name]:
                        self._write(name, rows[name])
                        written.append(name)
            except BaseException:
                # keep what was not written for the next flush (a full disk may clear)
                with self._lock:
                    for name in ORDER:
                        if name not in written:
                            self._rows[name][:0] = rows[name]
                    self._executions += 1
                raise
            if written:
                self.flushes += 1
