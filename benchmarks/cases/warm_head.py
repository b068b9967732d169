"""A warm head of ``sweep up`` for the contenders that join one (its own home and ports)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.paths import REPO, benchmark_env


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def warm_head() -> Iterator[Path]:
    """Start ``sweep up --idle never`` in a private SWEEPER_HOME; yield it; ``sweep down``.

    The home is short (under /tmp): Ray's socket paths live in it and must stay under ~107
    characters. The head's start is not part of any contender's time: it is what a user
    pays once, before iterating.
    """
    home = Path(tempfile.mkdtemp(prefix="wh", dir="/tmp"))
    env = {**benchmark_env(), "SWEEPER_HOME": str(home)}
    env["SWEEPER_SERVE_PORT"] = str(_free_port())
    sweep = [sys.executable, "-m", "sweeper.cli.main"]
    up = [*sweep, "up", "--idle", "never", "--port", str(_free_port())]
    subprocess.run(up, cwd=REPO, env=env, check=True, capture_output=True, timeout=300)
    try:
        yield home
    finally:
        subprocess.run([*sweep, "down"], cwd=REPO, env=env, capture_output=True, timeout=120)
        shutil.rmtree(home, ignore_errors=True)
