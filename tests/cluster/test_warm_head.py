"""The warm local Ray of ``sweep up``: sweeps join it, a stale one is passed over, it stops
itself when unused, and ``sweep up --status`` says where it is.

Every ``sweep`` here runs in a subprocess with a ``SWEEPER_HOME`` of its own (short: Ray's
socket paths must stay under ~107 characters) and the test suite's ``SWEEPER_REUSE_RAY=0``
lifted, so it joins only the head this test started.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_sweep_startup import HELLO_PY, STEP  # the same one-line step
from tests.conftest import free_port, sweep_cli

# each `sweep up` takes up to a minute on a loaded 2-core machine, a sweep as long
pytestmark = pytest.mark.timeout(900)


@pytest.fixture
def home() -> Iterator[Path]:
    """A private, short SWEEPER_HOME; whatever head is left in it is stopped afterwards."""
    path = Path(tempfile.mkdtemp(prefix="sh", dir="/tmp"))
    yield path
    head = path / "head.json"
    if head.exists():
        try:
            os.killpg(int(json.loads(head.read_text())["pid"]), signal.SIGKILL)
        except (ProcessLookupError, ValueError, KeyError):
            pass
    shutil.rmtree(path, ignore_errors=True)


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SWEEPER_REUSE_RAY", "RAY_ADDRESS")}
    return {**env, "SWEEPER_HOME": str(home), "SWEEPER_SERVE_PORT": str(free_port())}


def _sweep(project: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sweeper.cli.main", "hello", "--trials", "2", "--parallel", "2"]
        + ["--runtime", "local", "--metric", "loss", "--json", "--store", str(project / "st")],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(home),
    )


def _up(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # a shared process environment must not decide which env the CLI reads
    return sweep_cli("up", "--port", str(free_port()), *args, env=_env(home), timeout=300)


def _status(home: Path) -> subprocess.CompletedProcess[str]:
    return sweep_cli("up", "--status", env=_env(home), timeout=60)


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_sweep_joins_the_warm_head_which_outlives_it(make_project, home: Path) -> None:
    project = make_project(STEP, {"hello.py": HELLO_PY})
    assert _status(home).returncode == 1, "no head is up yet"
    started = _up(home, "--idle", "never")
    assert started.returncode == 0, started.stderr
    status = _status(home)
    assert status.returncode == 0 and "up at 127.0.0.1:" in status.stdout, status.stderr
    assert "never stops by itself" in status.stdout
    pid = json.loads((home / "head.json").read_text())["pid"]

    proc = _sweep(project, home)

    assert proc.returncode == 0, proc.stderr
    assert "using the warm Ray of `sweep up`" in proc.stderr
    assert "embedded" not in proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["trials"]["complete"] == 2
    assert _alive(pid) and _status(home).returncode == 0, "the head outlives the sweep"
    again = _up(home)
    assert again.returncode == 0 and "already up" in again.stderr

    stopped = sweep_cli("down", env=_env(home), timeout=120)
    assert stopped.returncode == 0 and "stopped" in stopped.stderr
    assert not _alive(pid) and not (home / "head.json").exists()
    gone = _status(home)
    assert gone.returncode == 1 and "no head of `sweep up` is running" in gone.stderr


def test_a_stale_head_file_is_passed_over_with_a_note(make_project, home: Path) -> None:
    project = make_project(STEP, {"hello.py": HELLO_PY})
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a keeper that was killed: its pid is free, its port closed
    port = free_port()
    head = {"address": f"127.0.0.1:{port}", "gcs_port": port, "http_port": free_port()}
    head |= {"pid": dead.pid, "token": "x", "started_at": time.time(), "idle_s": None}
    (home / "head.json").write_text(json.dumps(head))

    proc = _sweep(project, home)

    assert proc.returncode == 0, proc.stderr
    assert "ignoring the stale head of `sweep up`" in proc.stderr
    assert "starting an embedded Ray" in proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["trials"]["complete"] == 2
    status = _status(home)
    assert status.returncode == 1 and "stale" in status.stderr


def test_an_unused_head_stops_itself(home: Path) -> None:
    started = _up(home, "--idle", "10s")
    assert started.returncode == 0, started.stderr
    try:
        pid: int | None = json.loads((home / "head.json").read_text())["pid"]
    except FileNotFoundError:  # a machine so slow that it already stopped: the log says why
        pid = None
    deadline = time.monotonic() + 300  # a bound on a loaded machine, not a measured time
    while pid is not None and _alive(pid) and time.monotonic() < deadline:
        time.sleep(1)
    assert pid is None or not _alive(pid), "the idle head (keeper and Ray) is still running"
    assert not (home / "head.json").exists()
    assert "unused for" in (home / "head.log").read_text()


def test_idle_refuses_a_bad_duration(home: Path) -> None:
    proc = _up(home, "--idle", "soon")
    assert proc.returncode != 0
    assert "sweep: error: --idle" in proc.stderr and "Traceback" not in proc.stderr
    assert not (home / "head.json").exists()


def test_down_leaves_alone_a_process_that_reused_the_keepers_pid(home: Path) -> None:
    # a pid of head.json that is alive but no keeper (reused after a reboot, say)
    other = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        head = {"address": "127.0.0.1:1", "gcs_port": 1, "http_port": free_port()}
        head |= {"pid": other.pid, "token": "x", "started_at": time.time(), "idle_s": None}
        (home / "head.json").write_text(json.dumps(head))
        status = _status(home)
        assert status.returncode == 1 and "another program" in status.stderr
        stopped = sweep_cli("down", env=_env(home), timeout=120)
        assert stopped.returncode == 0
        assert other.poll() is None, "sweep down stopped a process that was not its head"
        assert not (home / "head.json").exists()
    finally:
        other.kill()
        other.wait()
