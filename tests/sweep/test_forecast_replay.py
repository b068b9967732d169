"""``sweep replay SWEEP --forecast`` on a real recorded sweep (local processes on a real Ray,
a real store): the forecast at 10/25/50% progress from what was known then, against the truth.

The step sleeps ``secs`` seconds. No figure here depends on how fast the machine is: only the
replay's shape, its counts, that the truth shrinks as the sweep goes on, and that two replays
of one store are the same.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.conftest import sweep_cli
from tests.sweep.test_forecast_sweep import NAP_PY, NAP_STEP

pytestmark = pytest.mark.timeout(900)

TRIALS = 10


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    project = tmp_path_factory.mktemp("replay")
    (project / "valohai.yaml").write_text(NAP_STEP)
    (project / "nap.py").write_text(NAP_PY)
    proc = sweep_cli(
        "nap", "--runtime", "local", "--trials", str(TRIALS), "--parallel", "2",
        "--metric", "score", "--sampler", "random", "--seed", "2",
        "-p", "secs=float:0.2..1.5", "-p", "seed=int:0..100", "--json",
        cwd=project, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return project, json.loads(proc.stdout)["sweep_id"]


def test_the_replayed_forecast_is_deterministic_and_compared_with_the_truth(
    recorded: tuple[Path, str],
) -> None:
    project, sweep_id = recorded
    args = ("replay", sweep_id, "--forecast", "--json")
    first = sweep_cli(*args, cwd=project, check=True).stdout
    assert sweep_cli(*args, cwd=project, check=True).stdout == first  # seeded: the same replay
    replay = json.loads(first)
    assert replay["sweep_id"] == sweep_id and replay["trials"] == TRIALS
    points = replay["points"]
    assert [p["progress"] for p in points] == [0.1, 0.25, 0.5]
    for point in points:
        # at p% progress, exactly that share of the trials had ended: known, and no more
        assert point["done"] == math.ceil(point["progress"] * TRIALS)
        assert point["done"] + point["running"] + point["remaining"] == TRIALS
        assert 0 < point["p10_s"] <= point["p50_s"] <= point["p90_s"]
        assert point["error"] == pytest.approx(
            (point["p50_s"] - point["actual_s"]) / point["actual_s"]
        )
        assert point["covered"] == (point["p10_s"] <= point["actual_s"] <= point["p90_s"])
    actual = [p["actual_s"] for p in points]
    assert actual == sorted(actual, reverse=True) and actual[-1] > 0
    assert actual[0] < replay["wall_s"]

    table = sweep_cli("replay", sweep_id, "--forecast", cwd=project, check=True).stdout
    assert "forecast p50" in table and "80% interval" in table and "actual" in table
    cells = [line.split("│")[1:-1] for line in table.splitlines() if line.count("│") > 2]
    by_progress = {row[0].strip(): [cell.strip() for cell in row] for row in cells}
    for point in points:
        row = by_progress[f"{point['progress']:.0%}"]
        assert row[2] == f"{point['p50_s']:.1f}s" and row[4] == f"{point['actual_s']:.1f}s"


def test_replay_needs_a_pruner_or_the_forecast(recorded: tuple[Path, str]) -> None:
    project, sweep_id = recorded
    proc = sweep_cli("replay", sweep_id, cwd=project)
    assert proc.returncode != 0
    assert proc.stderr.startswith("sweep: error: ") and "--forecast" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("sweep: error:") == 1
