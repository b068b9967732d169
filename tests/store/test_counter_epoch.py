"""The execution counter without an fsync per number: trusted under the boot that wrote it,
rebuilt from the records under any other (a crash of the machine is a new boot).

A crash of the kernel cannot be made here; what it leaves can: the value file rolled back
to the last number written with an fsync, and an epoch that names a boot that is over.
Numbers are taken by real processes, one of them killed by SIGKILL mid-way.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sweeper.store import Store
from sweeper.store._counter import EPOCH, VALUE, boot_id
from tests.store import store_workers

HERE = Path(__file__).parent
OTHER_BOOT = "00000000-0000-0000-0000-000000000000"


def _path(store: Store, rel: str) -> Path:
    assert store.local_path is not None
    return store.local_path / rel


def crash(store: Store, value: int | None) -> None:
    """What a crash of the machine may leave: the value rolled back to ``value`` (None: an
    empty file), the epoch (its time kept) naming the boot that ended."""
    epoch = _path(store, EPOCH)
    written = epoch.stat()
    epoch.write_text(OTHER_BOOT + "\n")
    os.utime(epoch, ns=(written.st_atime_ns, written.st_mtime_ns))
    _path(store, VALUE).write_text("" if value is None else f"{value}\n")


def record_counters(store: Store) -> list[int]:
    """The number of every execution.json in the store."""
    found = [store.record_json(i) for i in store.execution_ids()]
    return [int(r["counter"]) for r in found if r is not None]


def test_numbers_under_one_boot_follow_the_value_and_the_epoch_names_the_boot(
    store: Store,
) -> None:
    assert [store.allocate_counter() for _ in range(3)] == [1, 2, 3]
    assert _path(store, EPOCH).read_text().strip() == boot_id()
    assert _path(store, VALUE).read_text().strip() == "3"


def test_a_crash_that_lost_the_last_numbers_never_gives_them_again(store: Store) -> None:
    numbers = store_workers.write_executions(store.location, 5)  # records and rows: 1..5
    crash(store, value=1)
    assert store.allocate_counter() == 6
    assert _path(store, EPOCH).read_text().strip() == boot_id()
    assert store.allocate_counter() == 7
    assert [n for _, n in numbers] == [1, 2, 3, 4, 5]


def test_records_without_rows_count_in_the_rebuild(store: Store) -> None:
    # an actor that held its rows when the machine went down: only execution.json is left
    store.buffer_rows(3600)
    store_workers.write_executions_to(store, 4)
    assert store.read_dataset("executions").num_rows == 0
    crash(store, value=1)
    assert store.allocate_counter() == 5


def test_an_unreadable_value_is_rebuilt_from_every_record(store: Store) -> None:
    store_workers.write_executions_to(store, 3)
    old = time.time() - 3600  # folders changed long before the epoch: read all the same
    for name in store.execution_ids():
        os.utime(_path(store, f"executions/{name}"), (old, old))
    crash(store, value=None)
    assert store.allocate_counter() == 4


def test_a_store_written_before_epochs_keeps_its_value(store: Store) -> None:
    _path(store, VALUE).parent.mkdir(parents=True, exist_ok=True)
    _path(store, VALUE).write_text("41\n")  # written with an fsync by an older sweeper
    assert store.allocate_counter() == 42
    assert _path(store, EPOCH).read_text().strip() == boot_id()


def test_a_new_store_takes_its_first_number_without_a_parquet_reader(tmp_path: Path) -> None:
    code = (
        "import sys; from sweeper.store import Store; "
        f"s = Store.open({str(tmp_path / 'new')!r}, create=True); "
        "print(s.allocate_counter(), 'pyarrow' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.split() == ["1", "False"]


def test_killed_writers_and_a_crash_leave_every_number_unique(store: Store) -> None:
    """Writers in real processes, one killed by SIGKILL while it takes numbers; then the
    machine "crashes" back to the first number; more writers: no number twice."""
    worker = [sys.executable, str(HERE / "store_workers.py"), "numbered", store.location]
    proc = subprocess.Popen(worker)
    folder = _path(store, "executions")
    deadline = time.monotonic() + 120  # a generous wait, on a loaded machine
    while len(list(folder.glob("*/execution.json"))) < 10:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    context = multiprocessing.get_context("spawn")
    with context.Pool(3) as pool:
        pool.starmap(store_workers.write_executions, [(store.location, 5)] * 3)
    crash(store, value=1)
    with context.Pool(3) as pool:
        pool.starmap(store_workers.write_executions, [(store.location, 5)] * 3)
    numbers = record_counters(store)
    assert len(numbers) >= 10 + 30
    assert len(numbers) == len(set(numbers)), sorted(numbers)
