"""``--straggler-factor``: a real sweep (local processes on a real Ray, a real store) in which
one parameter value hangs; it is stopped as a ``time_limit`` failure, the others complete.

The step sleeps ``0.3 × size`` seconds, except for ``size=5``, which sleeps 10 minutes: far
longer than 3 × anything the other trials took, on however slow a machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sweeper.results
from tests.conftest import sweep_cli

pytestmark = pytest.mark.timeout(900)

STEP = """
- step:
    name: grow
    image: sweeper-test/python:latest
    command: python3 ./grow.py {parameters}
    parameters:
      - name: size
        type: integer
        default: 1
"""

GROW_PY = """
import argparse, json, time
p = argparse.ArgumentParser()
p.add_argument("--size", type=int)
a = p.parse_args()
time.sleep(600 if a.size == 5 else 0.3 * a.size)
print(json.dumps({"score": a.size}))
"""


@pytest.fixture
def grow_project(make_project) -> Path:
    return make_project(STEP, {"grow.py": GROW_PY})


def test_a_straggler_is_stopped_as_a_time_limit_and_says_why(grow_project: Path) -> None:
    proc = sweep_cli(
        "grow", "--runtime", "local", "--sampler", "grid", "-p", "size=1,2,3,4,5,6,7,8",
        "--parallel", "2", "--metric", "score", "--straggler-factor", "3", "--json",
        cwd=grow_project, timeout=500,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["trials"]["complete"] == 7
    assert summary["failure_classes"]["time_limit"] == 1
    assert sum(summary["failure_classes"].values()) == 1

    executions = sweeper.results.open(grow_project / ".sweeper").executions()
    ended = {json.loads(row["parameters"])["size"]: row for row in executions.to_dict("records")}
    straggler = ended[5]
    assert straggler["status"] == "error" and straggler["failure_kind"] == "time_limit"
    assert straggler["error"].startswith("straggler: ran ")
    assert "× the" in straggler["error"] and "forecast for its parameters" in straggler["error"]
    assert straggler["duration_s"] < 300  # stopped, not run to its end
    assert all(ended[size]["status"] == "complete" for size in (1, 2, 3, 4, 6, 7, 8))
    # the sweep keeps the factor, so that a resume stops stragglers as the first run did
    show = sweep_cli("status", summary["sweep_id"], "--json", cwd=grow_project, check=True)
    assert json.loads(show.stdout)["status"] == "complete"
    sweep_json = grow_project / ".sweeper" / "sweeps" / summary["sweep_id"] / "sweep.json"
    saved = json.loads(sweep_json.read_text())
    assert saved["options"]["straggler_factor"] == 3


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("1", "--straggler-factor must be more than 1"),
        ("abc", "--straggler-factor must be a number"),
    ],
)
def test_a_bad_straggler_factor_is_one_error_line(
    grow_project: Path, value: str, says: str
) -> None:
    proc = sweep_cli(
        "grow", "--runtime", "local", "--trials", "2", "--sampler", "random",
        "--straggler-factor", value, cwd=grow_project,
    )  # fmt: skip
    assert proc.returncode != 0
    assert proc.stderr.startswith("sweep: error: ") and says in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("sweep: error:") == 1
