""":class:`RecordStore`: what the rest of sweeper needs from a store.

Code outside ``sweeper/store/`` talks to a store through these methods only, so no other
package builds a path inside a store (``executions/<id>/execution.json``,
``sweeps/<id>/sweep.json``...). :class:`sweeper.store.Store` satisfies the protocol; a
test double or a driver-side proxy can too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sweeper.record import ExecutionRecord

if TYPE_CHECKING:
    import pyarrow as pa


class RecordStore(Protocol):
    """What execution/, cluster/, sweep/, pipeline/ and cli/ need from a store."""

    @property
    def location(self) -> str:
        """The path or URI the store was opened with."""
        ...

    @property
    def local_path(self) -> Path | None:
        """The store's folder when it is local, else None."""
        ...

    # -- records ---------------------------------------------------------------------------

    def put_record(self, record: ExecutionRecord, events: Iterable[Mapping[str, Any]] = ()) -> None:
        """Write execution.json; for a final record also its metrics, artifacts and executions rows."""
        ...

    def get_record(self, execution_id: str) -> ExecutionRecord | None:
        """The record in execution.json, or None when it was never written."""
        ...

    def complete_rows(self, record: ExecutionRecord, events: Iterable[Mapping[str, Any]]) -> None:
        """Write the dataset rows a killed writer left out (never twice, execution.json untouched)."""
        ...

    def without_rows(self, execution_ids: Iterable[str]) -> list[str]:
        """The ids, of those given, that have no executions row (rows a killed writer held)."""
        ...

    def buffer_rows(self, interval_s: float) -> None:
        """Hold finished executions' dataset rows and write them every ``interval_s`` s."""
        ...

    def flush_rows(self) -> int:
        """Write the rows held now; how many executions they were."""
        ...

    def execution_ids(self, *, since: str | None = None) -> list[str]:
        """The ids of the stored executions, sorted (``since``: those at or after it)."""
        ...

    def find_execution(self, ref: str) -> Mapping[str, Any]:
        """The record an id, unique prefix, ``#12`` or ``latest`` names."""
        ...

    def find_completed(self, spec_hash: str) -> Mapping[str, Any] | None:
        """The latest complete execution with this spec hash."""
        ...

    def allocate_counter(self) -> int:
        """The next execution number of this store."""
        ...

    # -- logs ------------------------------------------------------------------------------

    def log_file(self, execution_id: str) -> Path | None:
        """The local logs.txt to append to (folders made), or None for a remote store."""
        ...

    def put_log(self, execution_id: str, local: Path) -> None:
        """Upload a log written to a scratch file as the execution's logs.txt."""
        ...

    def read_log(self, execution_id: str, *, tail_bytes: int | None = None) -> str | None:
        """The execution's log (only its last ``tail_bytes``, when given), or None."""
        ...

    def scratch_dir(self) -> Path:
        """A local folder for work folders and caches that belongs with this store."""
        ...

    # -- blobs -----------------------------------------------------------------------------

    def put_file(self, path: str | os.PathLike[str]) -> tuple[str, int]:
        """Store a file's content once; (sha256, size)."""
        ...

    def has_blob(self, sha256: str) -> bool:
        """Whether a blob with this digest is stored."""
        ...

    def fetch_blob(self, sha256: str, dest: str | os.PathLike[str]) -> None:
        """Copy a blob to a local file."""
        ...

    def blob_local_path(self, sha256: str) -> Path | None:
        """The blob's own file, for a local store."""
        ...

    # -- sweeps ----------------------------------------------------------------------------

    def get_sweep(self, sweep_id: str) -> dict[str, Any] | None:
        """The sweep's saved state (sweep.json), or None."""
        ...

    def put_sweep(self, sweep_id: str, data: Mapping[str, Any]) -> None:
        """Save the sweep's state (sweep.json)."""
        ...

    def fetch_sweep_journal(self, sweep_id: str, dest: str | os.PathLike[str]) -> bool:
        """Copy the sweep's journal kept in the store to ``dest``; False when there is none."""
        ...

    def put_sweep_journal(self, sweep_id: str, local: str | os.PathLike[str]) -> None:
        """Save a local journal file as the sweep's journal in the store."""
        ...

    def sweep_journal(self, sweep_id: str) -> Path:
        """The local Optuna journal file of a sweep (StoreError for a remote store)."""
        ...

    def latest_sweep(self, *, unfinished: bool = False) -> str | None:
        """The id of the newest sweep (with ``unfinished``, the newest not complete)."""
        ...

    # -- pipeline runs ---------------------------------------------------------------------

    def get_pipeline_run(self, run_id: str) -> dict[str, Any] | None:
        """The pipeline run's saved state (run.json), or None."""
        ...

    def put_pipeline_run(self, run_id: str, data: Mapping[str, Any]) -> None:
        """Save the pipeline run's state (run.json)."""
        ...

    # -- datasets --------------------------------------------------------------------------

    def write_rows(self, dataset: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append rows to a dataset."""
        ...

    def read_dataset(self, name: str, columns: list[str] | None = None) -> pa.Table:
        """Every row of a dataset."""
        ...

    def compact(self, dataset: str | None = None) -> int:
        """Merge small parts; the number of part files removed."""
        ...
