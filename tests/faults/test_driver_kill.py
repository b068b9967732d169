"""kill -9 of the sweep driver at many points, then ``sweep resume``: exactly N trials, nothing lost.

Each sweep is killed several times in a row (the original driver and then resumed drivers
too), at points chosen by how many executions had finished or by seeded random delays, and a
last ``sweep resume`` finishes it. Drivers join one shared Ray head so that a kill/resume
cycle costs seconds, not an embedded Ray start.
"""

from __future__ import annotations

import json
import random
import signal
from pathlib import Path
from typing import Any

import pytest

from sweeper.store import Store
from tests.conftest import sweep_cli
from tests.faults.conftest import (
    kill_group,
    processes_under,
    records,
    sweep_popen,
    wait_for,
)

pytestmark = [pytest.mark.faults, pytest.mark.ray]

TRIALS = 6


def _finished(store_dir: Path) -> int:
    folder = store_dir / "datasets" / "executions"
    if not folder.exists():
        return 0
    return len([p for p in folder.glob("part-*.parquet")])


def _sweep_args(project: Path, address: str) -> list[str]:
    return [
        "tiny",
        "--trials",
        str(TRIALS),
        "--parallel",
        "2",
        "--metric",
        "loss",
        "--runtime",
        "local",
        "--seed",
        "7",
        "-p",
        "x=0..1",
        "-p",
        "sleep=0.4",
        "--json",
        "--address",
        address,
        "-f",
        str(project / "valohai.yaml"),
    ]


def _resume_args(project: Path, address: str) -> list[str]:
    return ["resume", "--json", "--address", address, "-f", str(project / "valohai.yaml")]


def check_sweep(project: Path, sweep_id: str) -> dict[str, Any]:
    """Exactly TRIALS finished trials, no duplicate, every one with its outputs and metrics."""
    store_dir = project / ".sweeper"
    store = Store.open(store_dir)
    all_rows = store.read_dataset("executions").to_pylist()
    mine = [r for r in all_rows if r["sweep_id"] == sweep_id]
    ids = [r["execution_id"] for r in mine]
    assert len(ids) == len(set(ids)), f"duplicated execution rows: {sorted(ids)}"
    counters = [r["counter"] for r in all_rows]
    assert len(counters) == len(set(counters)), f"duplicated counters: {sorted(counters)}"
    complete = [r for r in mine if r["status"] == "complete"]
    assert sorted(r["trial_number"] for r in complete) == sorted(
        {r["trial_number"] for r in complete}
    ), "a trial finished twice"
    assert len(complete) == TRIALS, [(r["trial_number"], r["status"]) for r in mine]
    assert {r["status"] for r in mine} <= {"complete", "crashed"}, mine
    metric_ids = {r["execution_id"] for r in store.read_dataset("metrics").to_pylist()}
    artifacts = store.read_dataset("artifacts").to_pylist()
    for row in complete:
        record = store.read_json(f"executions/{row['execution_id']}/execution.json")
        assert record is not None and record["status"] == "complete"
        assert row["metric.loss"] is not None
        assert row["execution_id"] in metric_ids, f"metrics rows of {row['execution_id']} lost"
        outs = [a for a in artifacts if a["execution_id"] == row["execution_id"]]
        assert [o["path"] for o in record["outputs"]] == ["out.txt"]
        assert outs and all(store.has_blob(o["sha256"]) for o in outs)
        blob = store.blob_local_path(record["outputs"][0]["sha256"])
        assert blob is not None and float(blob.read_text()) == row["param.x"]
    # every execution the driver started ended in the store: none is left "started"
    unfinished = [
        r["id"]
        for r in records(store_dir)
        if r["sweep_id"] == sweep_id and r["status"] not in ("complete", "crashed")
    ]
    assert unfinished == []
    return {"rows": len(mine), "complete": len(complete)}


def _run_with_kills(project: Path, address: str, kill_points: list[tuple[str, float]]) -> str:
    store_dir = project / ".sweeper"
    first = True
    for kind, value in kill_points:
        args = _sweep_args(project, address) if first else _resume_args(project, address)
        before = _finished(store_dir)
        driver = sweep_popen(*args)
        if kind == "finished":
            # kill once `value` more executions have reached the executions dataset
            # (and, for the first driver, once the sweep is saved: before that there is
            # nothing to resume)
            wait_for(
                lambda: (
                    (
                        _finished(store_dir) >= before + value
                        and any(store_dir.glob("sweeps/*/optuna.journal"))
                    )
                    or driver.poll() is not None
                )
            )
        else:
            try:
                driver.wait(timeout=value)
            except Exception:  # noqa: BLE001 - still running: the point of the test
                pass
        if driver.poll() is not None:
            out, err = driver.communicate()
            raise AssertionError(f"driver ended before its kill point ({kind} {value}): {err}")
        kill_group(driver, signal.SIGKILL)
        first = False
    final = sweep_cli(*_resume_args(project, address), timeout=180)
    assert final.returncode == 0, final.stderr
    assert "Traceback" not in final.stderr
    summary = json.loads(final.stdout)
    assert summary["trials"]["complete"] == TRIALS, summary
    assert summary["trials"]["error"] == 0 and summary["trials"]["running"] == 0
    return str(summary["sweep_id"])


def test_kill_after_k_finished_executions(tiny_project: Path, ray_head: str) -> None:
    # 5 kill points: at once, then after 1, 2 and 1 more finished executions, and while
    # the resumed driver is still settling the trials of the one before.
    points = [("finished", 0), ("finished", 1), ("finished", 2), ("finished", 1), ("delay", 0.3)]
    sweep_id = _run_with_kills(tiny_project, ray_head, points)
    check_sweep(tiny_project, sweep_id)
    assert processes_under(tiny_project) == []


def test_kill_after_random_delays(tiny_project: Path, ray_head: str) -> None:
    rng = random.Random(20240611)
    points = [("delay", round(rng.uniform(0.2, 3.5), 2)) for _ in range(5)]
    sweep_id = _run_with_kills(tiny_project, ray_head, points)
    check_sweep(tiny_project, sweep_id)
    assert processes_under(tiny_project) == []
