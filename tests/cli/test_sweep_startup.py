"""A sweep's start-up: Ray starts while the sweep prepares, and bad input leaves no Ray behind.

Each ``sweep`` here runs in a subprocess whose Ray lives under its own ``RAY_TMPDIR``, so
what it started (or did not) is told apart from any other Ray on the machine.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import sweep_cli

# a sweep here gets up to 600 s: the test's limit is above that
pytestmark = pytest.mark.timeout(900)

STEP = """
- step:
    name: hello
    image: python:3.12
    command: python3 ./hello.py {parameters}
    parameters:
      - name: x
        type: float
        default: 0.5
        min: 0
        max: 1
"""
HELLO_PY = 'import json, sys\nprint(json.dumps({"loss": float(sys.argv[1].split("=")[1])}))\n'


@pytest.fixture
def ray_tmpdir() -> Iterator[Path]:
    """A short private RAY_TMPDIR (Ray's socket paths must stay under ~107 characters)."""
    path = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _ray_processes(ray_tmpdir: Path) -> list[psutil.Process]:
    """Live processes of the Ray that ran under ``ray_tmpdir`` (they inherit its RAY_TMPDIR)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get("RAY_TMPDIR") == str(ray_tmpdir):
                found.append(proc)
        except psutil.Error:  # gone, or another user's
            continue
    return found


def _gone(ray_tmpdir: Path, timeout: float = 120) -> list[psutil.Process]:
    """Wait until no process of that Ray is left; what is left at the timeout."""
    deadline = time.monotonic() + timeout
    left = _ray_processes(ray_tmpdir)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = _ray_processes(ray_tmpdir)
    return left


def _one_error(proc: Any) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("sweep: error:")]
    assert len(errors) == 1, proc.stderr
    return str(errors[0])


@pytest.mark.parametrize(
    ("yaml_text", "args", "message"),
    [
        ("- step: [broken\n", ["hello", "--trials", "2"], "valohai.yaml"),
        (STEP, ["nosuch", "--trials", "2"], 'unknown step "nosuch"'),
        (STEP, ["hello", "--trials", "2", "--task", "nosuch"], "nosuch"),
        (STEP, ["pipeline", "run", "nosuch"], 'unknown pipeline "nosuch"'),
    ],
    ids=["broken-yaml", "unknown-step", "unknown-task", "unknown-pipeline"],
)
def test_a_broken_config_or_an_unknown_name_fails_before_ray_starts(
    make_project: Any, ray_tmpdir: Path, yaml_text: str, args: list[str], message: str
) -> None:
    project = make_project(yaml_text, {"hello.py": HELLO_PY})
    proc = sweep_cli(*args, cwd=project, env={"RAY_TMPDIR": str(ray_tmpdir)}, timeout=120)
    assert message in _one_error(proc)
    assert not list(ray_tmpdir.rglob("session_*")), "Ray was started for a broken config"


def test_bad_input_found_while_ray_starts_is_one_error_and_leaves_no_ray(
    make_project: Any, ray_tmpdir: Path
) -> None:
    project = make_project(STEP, {"hello.py": HELLO_PY})
    # no --trials: found while the sweep prepares, with Ray's start under way
    proc = sweep_cli(
        "hello", "--metric", "loss", "--runtime", "local", cwd=project,
        env={"RAY_TMPDIR": str(ray_tmpdir)}, timeout=120,
    )  # fmt: skip
    assert "--trials" in _one_error(proc)
    assert proc.stdout == ""
    assert _gone(ray_tmpdir) == []


def test_a_sweep_runs_on_the_ray_started_in_the_background(
    make_project: Any, ray_tmpdir: Path
) -> None:
    project = make_project(STEP, {"hello.py": HELLO_PY})
    proc = sweep_cli(
        "hello", "--trials", "3", "--parallel", "2", "--metric", "loss", "--runtime", "local",
        "--sampler", "random", "--json", cwd=project,
        env={"RAY_TMPDIR": str(ray_tmpdir)}, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert '"complete": 3' in proc.stdout
    assert list(ray_tmpdir.rglob("session_*")), "the sweep's Ray did not run under RAY_TMPDIR"
    assert _gone(ray_tmpdir) == []  # the embedded Ray ends with the sweep
    assert os.path.isdir(project / ".sweeper")
