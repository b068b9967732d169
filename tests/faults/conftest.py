"""Shared pieces of the fault-injection suite: a tiny project, a shared Ray head, checks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sweeper.store import Store

#: A stdlib-only step: sleeps, writes one output file, prints one metrics line.
TINY_STEP = """
- step:
    name: tiny
    image: sweeper-test/python:latest
    command: python3 ./tiny.py {parameters}
    parameters:
      - name: x
        type: float
        min: 0
        max: 1
        default: 0.5
      - name: sleep
        type: float
        default: 0.2
"""

TINY_PY = """
import argparse, json, os, time
p = argparse.ArgumentParser()
p.add_argument("--x", type=float)
p.add_argument("--sleep", type=float)
a = p.parse_args()
time.sleep(a.sleep)
with open(os.path.join(os.environ["VH_OUTPUTS_DIR"], "out.txt"), "w") as handle:
    handle.write(repr(a.x))
print(json.dumps({"loss": (a.x - 0.3) ** 2, "x": a.x}), flush=True)
"""


@pytest.fixture
def tiny_project(make_project) -> Path:
    return make_project(TINY_STEP, {"tiny.py": TINY_PY})


def sweep_popen(*args: str, cwd: Path | None = None, **env: str) -> subprocess.Popen[str]:
    """Start the real ``sweep`` command in its own session (so its group can be killed)."""
    return subprocess.Popen(
        [sys.executable, "-m", "sweeper.cli.main", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, **env},
    )


def kill_group(proc: subprocess.Popen[Any], sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    proc.communicate(timeout=60)


def wait_for(predicate: Any, timeout: float = 60.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")


def rows(store_dir: Path, dataset: str = "executions") -> list[dict[str, Any]]:
    return Store.open(store_dir).read_dataset(dataset).to_pylist()


def records(store_dir: Path) -> list[dict[str, Any]]:
    """Every execution.json in the store."""
    out = []
    for path in sorted((store_dir / "executions").glob("*/execution.json")):
        out.append(json.loads(path.read_text()))
    return out


def processes_under(root: Path) -> list[str]:
    """Live processes whose working folder is inside ``root`` (steps left behind)."""
    found = []
    root = root.resolve()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if state != "Z" and (cwd == root or root in cwd.parents):
            found.append(f"{entry.name} {cmdline}")
    return found


def containers(label: str = "sweeper.execution_id") -> list[str]:
    """Ids of containers (running or not) that carry a sweeper label."""
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={label}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


def containers_left(label: str, timeout: float = 60.0) -> list[str]:
    """Ids of the containers with ``label`` still there after ``timeout``: waits for them to
    go, as the daemon removes an exited one (``auto_remove``) a moment after its exit."""
    deadline = time.monotonic() + timeout
    while (left := containers(label)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def assert_clean_error(proc: subprocess.CompletedProcess[str] | tuple[int, str, str]) -> str:
    """One ``sweep: error: ...`` paragraph on stderr, a non-zero exit, no traceback."""
    if isinstance(proc, tuple):
        code, _out, err = proc
    else:
        code, err = proc.returncode, proc.stderr
    assert code != 0, err
    assert "Traceback" not in err, err
    assert err.startswith("sweep: error: ") or "\nsweep: error: " in err or "error:" in err, err
    return err


def sweep_in_background(runner: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Start ``runner.run()`` in a daemon thread, for a test that breaks things meanwhile.

    The dict gets ``summary`` (what ``run`` returned) or ``error`` (what it raised).
    """
    outcome: dict[str, Any] = {}

    def drive() -> None:
        try:
            outcome["summary"] = runner.run()
        except BaseException as exc:  # noqa: BLE001 - the test asserts on it
            outcome["error"] = exc

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    return driver, outcome
