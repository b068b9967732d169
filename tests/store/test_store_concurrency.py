from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

from sweeper.store import Store
from tests.store import store_workers

HERE = Path(__file__).parent


def test_concurrent_writers_lose_and_duplicate_nothing(store: Store) -> None:
    context = multiprocessing.get_context("spawn")
    with context.Pool(5) as pool:
        results = pool.starmap(store_workers.write_executions, [(store.location, 12)] * 5)
    written = [item for batch in results for item in batch]
    table = store.read_dataset("executions")
    assert sorted(table["execution_id"].to_pylist()) == sorted(i for i, _ in written)
    assert sorted(table["counter"].to_pylist()) == list(range(1, 61))
    metrics = store.read_dataset("metrics")
    assert metrics.num_rows == 60 * 3 * 2
    assert store.damaged_parts() == []


def test_counter_is_unique_across_processes(store: Store) -> None:
    context = multiprocessing.get_context("spawn")
    with context.Pool(6) as pool:
        results = pool.starmap(store_workers.allocate, [(store.location, 40)] * 6)
    values = [v for batch in results for v in batch]
    assert sorted(values) == list(range(1, 241))
    for batch in results:
        assert batch == sorted(batch)


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(HERE / "store_workers.py"), *args])


def test_kill_during_part_write_leaves_only_a_temp_file(store: Store, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    proc = _spawn("hang", store.location, str(ready))
    deadline = time.monotonic() + 120  # a generous wait for the event, on a loaded machine
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    folder = store.local_path / "datasets" / "executions"  # type: ignore[operator]
    leftovers = [p.name for p in folder.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".")
    assert Path(ready.read_text()).name == leftovers[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert store.read_dataset("executions").num_rows == 0
        assert store.read_dataset("metrics").num_rows == 4
    assert store.damaged_parts() == []


def test_kill_during_appends_keeps_the_store_readable(store: Store) -> None:
    proc = _spawn("forever", store.location)
    folder = store.local_path / "datasets" / "executions"  # type: ignore[operator]
    deadline = time.monotonic() + 120  # a generous wait for the event, on a loaded machine
    while len(list(folder.glob("part-*"))) < 5:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        executions = store.read_dataset("executions")
        metrics = store.read_dataset("metrics")
    assert store.damaged_parts() == []
    ids = executions["execution_id"].to_pylist()
    assert len(ids) == len(set(ids)) >= 5
    # The executions row is written last: every execution listed has its record and metrics.
    with_metrics = set(metrics["execution_id"].to_pylist())
    for execution_id in ids:
        assert store.find_execution(execution_id)["id"] == execution_id
        assert execution_id in with_metrics
