"""A read of the store leaves nothing of Python's to Arrow's own threads.

A part's bytes are read into a Python object and handed to Arrow. Had Arrow decoded them
on its thread pool, a pool thread could drop the last reference to them after the read has
returned: that needs the interpreter's lock, and once the interpreter is shutting down it
ends the thread inside a C++ destructor, which aborts the process ("terminate called
without an active exception", exit -6), as `sweep ls --store s3://...` did on a busy
machine after printing its rows.
"""

from __future__ import annotations

from pathlib import Path

from sweeper.store import Store
from sweeper.store._backend import LocalBackend
from sweeper.store._parts import Parts
from tests.store.store_workers import events, make_record


class _LendingBackend(LocalBackend):
    """A local backend that hands out each file's bytes as a bytearray it keeps, so that a
    test can tell whether anything still holds them: a bytearray that something reads
    through the buffer protocol cannot be resized."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, str(root))
        self.lent: list[bytearray] = []

    def read_bytes(self, rel: str) -> bytes | None:
        data = super().read_bytes(rel)
        if data is None:
            return None
        lent = bytearray(data)
        self.lent.append(lent)
        return lent  # type: ignore[return-value]  # bytes-like: all that Parts relies on


def test_nothing_holds_a_parts_bytes_once_the_read_returns(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store", create=True)
    for number in range(4):
        store.write_execution(make_record(number), events(3))
    backend = _LendingBackend(tmp_path / "store")
    for _ in range(20):  # on a pool thread the reference outlived about a third of the reads
        for dataset in ("executions", "metrics"):
            assert Parts(backend, dataset).table().num_rows > 0
            for lent in backend.lent:
                try:
                    lent.clear()
                except BufferError:
                    raise AssertionError(
                        f"a part of {dataset} is still held after the read returned"
                    ) from None
            backend.lent.clear()
