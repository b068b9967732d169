"""Recovery, written once: settle an execution whose runner or driver died.

A sweep and a pipeline both resume after a killed driver and both lose actors to dead
nodes; what that leaves in the store is the same, so they settle it the same way here:
the record is read through the store, a final one gets the dataset rows a killed writer
left out, an unfinished one has what its runtime left running removed and is finished as
``crashed``. No Ray import: this runs on the driver, on records only.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone

from sweeper.errors import SweeperError
from sweeper.execution.metrics import record_missing_rows
from sweeper.record import ExecutionRecord, FailureKind
from sweeper.runtime import get_runtime
from sweeper.status import Status
from sweeper.store import RecordStore


def read_record(store: RecordStore, execution_id: str) -> ExecutionRecord | None:
    """An execution's record (None if none was written), its dataset rows completed if final.

    A final record gets the rows a writer killed between ``execution.json`` and its Parquet
    rows never wrote, so a recovered execution is never missing from the datasets. Safe
    while the runner lives: nothing is removed.
    """
    record = store.get_record(execution_id)
    if record is not None and record.is_final:
        record_missing_rows(store, record)
    return record


def restore_rows(store: RecordStore, execution_ids: Iterable[str]) -> list[str]:
    """Give every finished execution of ``execution_ids`` its dataset rows; the ids restored.

    An actor holds its executions' rows for a moment before it writes them (see
    :meth:`sweeper.store.Store.buffer_rows`); a ``kill -9`` or a lost node takes those rows
    with it but never ``execution.json``, from which they are rebuilt here. One read of the
    ``executions`` dataset finds the ids without a row; only those records are read.
    """
    restored = []
    for execution_id in store.without_rows(execution_ids):
        record = read_record(store, execution_id)
        if record is not None and record.is_final:
            restored.append(execution_id)
    return restored


def settle(store: RecordStore, execution_id: str) -> ExecutionRecord | None:
    """The record of an execution whose runner is dead, as :func:`read_record` gives it.

    One that did not end cleanly (not final, or ``crashed``) also has what its runtime left
    behind (a container) removed. Call it only where the runner is known dead.
    """
    record = read_record(store, execution_id)
    if record is None:
        return None
    if not record.is_final or record.status is Status.CRASHED:
        _remove_leftovers(record)
    return record


def crash(store: RecordStore, record: ExecutionRecord, reason: str) -> ExecutionRecord:
    """Finish a settled, unfinished record as ``crashed`` with ``reason``; a final one is kept.

    Its runner or driver died, not its step: an ``infrastructure`` failure.
    """
    if record.is_final:
        return record
    counter = record.counter if record.counter is not None else store.allocate_counter()
    ended_at = datetime.now(timezone.utc).isoformat()
    crashed = record.finished(
        Status.CRASHED,
        error=reason,
        failure_kind=FailureKind.INFRASTRUCTURE,
        ended_at=ended_at,
        counter=counter,
    )
    store.put_record(crashed)
    return crashed


def mark_crashed(
    store: RecordStore,
    execution_id: str,
    reason: str,
    *,
    sweep_id: str | None = None,
    pipeline_run_id: str | None = None,
    planned: ExecutionRecord | None = None,
) -> ExecutionRecord:
    """Settle an execution whose actor or driver died and finish it as ``crashed``.

    A record that ended meanwhile is returned as it is; the others fail as ``infrastructure``
    (see :func:`crash`). One that was never written is made from ``planned`` (what the
    driver knows of it: step, parameters, trial), else from the owner given, so that the
    crash is counted.
    """
    record = (
        settle(store, execution_id)
        or planned
        or ExecutionRecord(id=execution_id, sweep_id=sweep_id, pipeline_run_id=pipeline_run_id)
    )
    return crash(store, record, reason)


def _remove_leftovers(record: ExecutionRecord) -> None:
    try:
        runtime = get_runtime(record.runtime)
    except SweeperError:
        return  # a runtime this version does not know left nothing it could remove
    runtime.remove_leftovers(record.id)
