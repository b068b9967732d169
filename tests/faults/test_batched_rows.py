"""kill -9 while the actors hold finished executions' rows: resume rebuilds them, exactly once.

A sweep's actors write their dataset rows in batches (``SWEEPER_ROWS_FLUSH_S``); here they
hold them for an hour, so every execution finished before the kill has its final
``execution.json`` and no row at all. ``sweep resume`` must end at exactly N trials with
one row (and the metrics and artifacts) of every finished execution.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from sweeper.store import Store
from tests.conftest import sweep_cli
from tests.faults.conftest import kill_group, processes_under, records, sweep_popen, wait_for
from tests.faults.test_driver_kill import TRIALS, _resume_args, _sweep_args, check_sweep

pytestmark = [pytest.mark.faults, pytest.mark.ray]

HOLD = {"SWEEPER_ROWS_FLUSH_S": "3600"}


def _finished(store_dir: Path) -> list[str]:
    return [r["id"] for r in records(store_dir) if r.get("status") == "complete"]


def test_kill_9_with_rows_held_then_resume_rebuilds_them(tiny_project: Path, ray_head: str) -> None:
    store_dir = tiny_project / ".sweeper"
    driver = sweep_popen(*_sweep_args(tiny_project, ray_head, sleep=0.3), **HOLD)
    wait_for(lambda: len(_finished(store_dir)) >= 3 or driver.poll() is not None, timeout=180)
    assert driver.poll() is None, driver.communicate()[1]
    kill_group(driver, signal.SIGKILL)
    finished = _finished(store_dir)
    assert 3 <= len(finished) < TRIALS
    # the kill took the held rows: the records are all that is left of these executions
    assert Store.open(store_dir).read_dataset("executions").num_rows == 0

    resumed = sweep_cli(*_resume_args(tiny_project, ray_head), timeout=240, env=HOLD)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["trials"]["complete"] == TRIALS, summary
    sweep_id = str(summary["sweep_id"])
    check_sweep(tiny_project, sweep_id)  # one row each, metrics and artifacts, no duplicate
    rows = Store.open(store_dir).read_dataset("executions").to_pylist()
    assert set(finished) <= {r["execution_id"] for r in rows}
    assert processes_under(tiny_project) == []
