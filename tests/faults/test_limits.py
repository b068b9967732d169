"""Limits: a flood of output never fills the driver's memory; metric events are rate-capped."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sweeper.store import Store
from tests.faults.conftest import records

pytestmark = [pytest.mark.faults]

FLOOD_STEPS = """
- step:
    name: flood
    image: sweeper-test/python:latest
    command: python3 ./flood.py
- step:
    name: chatty
    image: sweeper-test/python:latest
    command: python3 ./chatty.py
"""

FLOOD_PY = r"""
import sys
line = b"x" * 1023 + b"\n"
block = line * 1024  # 1 MiB
out = sys.stdout.buffer
for _ in range(200):
    out.write(block)
out.write(b"y" * (8 << 20))  # and one 8 MiB line without a newline
out.flush()
print('{"loss": 1.0}', flush=True)
"""

CHATTY_PY = r"""
import json
for i in range(5000):
    print(json.dumps({"step": i, "loss": 1.0 / (i + 1)}))
"""


def _run_measured(project: Path, step: str, runtime: str = "local") -> tuple[int, int]:
    """Run ``sweep run STEP`` in a subprocess; (exit code, its peak RSS in KiB).

    The peak is the kernel's own (``ru_maxrss`` from ``wait4``), not a sample: a spike
    between two samples counts. It is the largest of the driver and the processes it waited
    for (a local step's, far smaller than the driver's own).
    """
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sweeper.cli.main",
            "run",
            step,
            "--runtime",
            runtime,
            "-f",
            str(project / "valohai.yaml"),
        ],
        stdout=subprocess.DEVNULL,  # the echo of the log goes somewhere that never blocks
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    with proc.stderr:
        err = proc.stderr.read().decode(errors="replace")  # until the driver exits
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait
    assert "Traceback" not in err, err
    return proc.returncode, usage.ru_maxrss


def test_a_200_mb_output_flood_keeps_the_driver_small(make_project) -> None:
    project: Path = make_project(FLOOD_STEPS, {"flood.py": FLOOD_PY, "chatty.py": CHATTY_PY})
    code, baseline = _run_measured(project, "chatty")
    assert code == 0
    code, peak = _run_measured(project, "flood")
    assert code == 0
    # the log is streamed to disk: the driver grows by far less than the 208 MB it saw
    assert peak - baseline < 64 * 1024, f"RSS {baseline} KiB -> {peak} KiB"
    record = next(r for r in records(project / ".sweeper") if r["step"] == "flood")
    assert record["status"] == "complete" and record["metrics"] == {"loss": 1.0}
    log = project / ".sweeper" / "executions" / record["id"] / "logs.txt"
    assert log.stat().st_size >= 200 << 20


def test_metric_events_are_capped_per_second_and_the_drop_is_counted(make_project) -> None:
    project: Path = make_project(FLOOD_STEPS, {"flood.py": FLOOD_PY, "chatty.py": CHATTY_PY})
    code, _ = _run_measured(project, "chatty")
    assert code == 0
    record = records(project / ".sweeper")[0]
    store = Store.open(project / ".sweeper")
    events = {m["seq"] for m in store.read_dataset("metrics").to_pylist()}
    dropped = record["metrics_dropped"]
    assert dropped > 0, "5000 events printed at once must hit the 1000/s cap"
    assert len(events) + dropped == 5000
    # at most the cap in each second the step took (a partial second at each end)
    assert len(events) <= 1000 * (math.ceil(record["duration_s"]) + 1)
    row = store.read_dataset("executions").to_pylist()[0]
    assert row["metrics_dropped"] == dropped


@pytest.mark.docker
def test_a_docker_output_flood_keeps_the_driver_small(make_project) -> None:
    project: Path = make_project(FLOOD_STEPS, {"flood.py": FLOOD_PY, "chatty.py": CHATTY_PY})
    code, baseline = _run_measured(project, "chatty", "docker")
    assert code == 0
    code, peak = _run_measured(project, "flood", "docker")
    assert code == 0
    assert peak - baseline < 64 * 1024, f"RSS {baseline} KiB -> {peak} KiB"
    record = next(r for r in records(project / ".sweeper") if r["step"] == "flood")
    assert record["status"] == "complete" and record["metrics"] == {"loss": 1.0}
    log = project / ".sweeper" / "executions" / record["id"] / "logs.txt"
    assert log.stat().st_size >= 200 << 20
