"""Where the benchmark project, the results and the contender modules live."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PROJECT = ROOT / "project"
CONFIG = PROJECT / "valohai.yaml"
RESULTS = ROOT / "results"
REPO = ROOT.parent
IMAGE = "sweeper-test/python:latest"


def benchmark_env() -> dict[str, str]:
    """The environment of every contender: Ray on loopback only, no telemetry, this venv first."""
    env = dict(os.environ)
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # every contender starts its own Ray (sweeper would join a `ray start --head` otherwise)
    env["SWEEPER_REUSE_RAY"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env
