"""kill -9 of a sweep's driver, then what a crash of the machine leaves of the counter (its
value rolled back, its epoch naming a boot that is over), then ``sweep resume``: exactly N
trials and no execution number twice.

The actors take numbers without an fsync (``sweeper.store._counter``); after a crash the
numbers are rebuilt from the records. The crash itself cannot be made in a test: its
traces on disk can, and the drivers and actors are real processes.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from sweeper.store import Store
from tests.conftest import sweep_cli
from tests.faults.conftest import kill_group, records, sweep_popen, wait_for
from tests.faults.test_driver_kill import TRIALS, _resume_args, _sweep_args, check_sweep
from tests.store.test_counter_epoch import crash

pytestmark = [pytest.mark.faults, pytest.mark.ray]


def _finished(store_dir: Path) -> int:
    return len([r for r in records(store_dir) if r.get("status") == "complete"])


def test_a_crash_that_rolled_the_counter_back_gives_no_number_twice(
    tiny_project: Path, ray_head: str
) -> None:
    store_dir = tiny_project / ".sweeper"
    driver = sweep_popen(*_sweep_args(tiny_project, ray_head, sleep=0.4))
    wait_for(lambda: _finished(store_dir) >= 3 or driver.poll() is not None, timeout=180)
    assert driver.poll() is None, driver.communicate()
    kill_group(driver, signal.SIGKILL)
    before = [r["counter"] for r in records(store_dir)]
    crash(Store.open(store_dir), value=1)
    final = sweep_cli(*_resume_args(tiny_project, ray_head), timeout=180)
    assert final.returncode == 0, final.stderr
    summary = json.loads(final.stdout)
    assert summary["trials"]["complete"] == TRIALS, summary
    check_sweep(tiny_project, str(summary["sweep_id"]))
    numbers = [r["counter"] for r in records(store_dir)]
    assert len(numbers) == len(set(numbers)), sorted(numbers)
    assert min(n for n in numbers if n not in before) > max(before)
