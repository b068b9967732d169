"""A sweep's forecast and budget on real sweeps: local processes on a real Ray, a real store.

The step sleeps ``secs`` seconds: its duration is its parameter's. No figure here depends on
how fast the machine is; only orders (p10 <= p50 <= p90) and counts are checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import sweeper.results
from tests.conftest import sweep_cli

pytestmark = pytest.mark.timeout(900)

NAP_STEP = """
- step:
    name: nap
    image: sweeper-test/python:latest
    command: python3 ./nap.py {parameters}
    parameters:
      - name: secs
        type: float
        default: 1
      - name: seed
        type: integer
        default: 0
"""

NAP_PY = """
import argparse, json, time
p = argparse.ArgumentParser()
p.add_argument("--secs", type=float); p.add_argument("--seed", type=int)
a = p.parse_args()
time.sleep(a.secs)
print(json.dumps({"score": a.seed}))
"""


@pytest.fixture
def nap_project(make_project) -> Path:
    return make_project(NAP_STEP, {"nap.py": NAP_PY})


def _sweep(project: Path, *args: str) -> dict[str, Any]:
    proc = sweep_cli(
        "nap", "--runtime", "local", "--metric", "score", "--direction", "maximize",
        "--sampler", "random", "--seed", "3", "-p", "seed=int:0..100", *args, "--json",
        cwd=project, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _status(project: Path, sweep_id: str = "") -> dict[str, Any]:
    proc = sweep_cli("status", *([sweep_id] if sweep_id else []), "--json", cwd=project)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_running_sweep_s_status_forecasts_the_rest(nap_project: Path) -> None:
    command = [
        sys.executable, "-m", "sweeper.cli.main", "nap", "--runtime", "local", "--trials", "12",
        "--parallel", "2", "--metric", "score", "--sampler", "random", "--seed", "1",
        "-p", "secs=3", "-p", "seed=int:0..100",
    ]  # fmt: skip
    # rows written as each trial ends (not held 2 s), so that status sees them at once
    env = {**os.environ, "SWEEPER_ROWS_FLUSH_S": "0"}
    sweep = subprocess.Popen(command, cwd=nap_project, stderr=subprocess.PIPE, text=True, env=env)
    seen: list[dict[str, Any]] = []
    try:
        while sweep.poll() is None:
            proc = sweep_cli("status", "--json", cwd=nap_project)
            if proc.returncode == 0:  # 1 until the sweep has saved itself
                summary = json.loads(proc.stdout)
                forecast = summary["forecast"]
                if summary["status"] == "running" and forecast["seconds_p50"] is not None:
                    seen.append(summary)
            time.sleep(2)  # each status is a Python process: leave the machine to the sweep
        _, stderr = sweep.communicate(timeout=600)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 0, stderr
    assert seen, "no status while the sweep ran had a forecast"
    for summary in seen:
        forecast = summary["forecast"]
        done = sum(summary["trials"][k] for k in ("complete", "error", "pruned"))
        assert forecast["remaining"] + forecast["running"] + done == 12
        assert 0 <= forecast["seconds_p10"] <= forecast["seconds_p50"] <= forecast["seconds_p90"]
        assert forecast["slots"] >= 1 and forecast["learned_from"] >= 1
        assert forecast["cpu_hours"] is None or forecast["cpu_hours"] >= 0
    # the sweep's own progress line says the time left once a trial has finished
    assert "left (" in stderr or "finished" in stderr

    after = _status(nap_project)
    assert after["status"] == "complete" and after["forecast"]["remaining"] == 0
    # the results API gives the same summary, forecast included
    api = sweeper.results.open(nap_project / ".sweeper").status(after["sweep_id"]).to_dict()
    assert api["forecast"]["learned_from"] == after["forecast"]["learned_from"] == 12


def test_a_budget_stops_the_sweep_and_a_resume_extends_it(nap_project: Path) -> None:
    first = _sweep(
        nap_project, "--trials", "30", "--parallel", "1", "-p", "secs=1", "--budget", "4s"
    )
    assert first["status"] == "stopped"
    done = first["trials"]["complete"]
    assert 1 <= done < 30
    budget = first["budget"]
    assert budget["wall_s"] == 4 and "wall budget" in budget["stopped"]
    assert budget["spent"]["wall_s"] > 0
    status = _status(nap_project, first["sweep_id"])
    assert status["budget"]["stopped"] == budget["stopped"]
    assert status["forecast"]["remaining"] == 30 - done
    text = sweep_cli("status", first["sweep_id"], cwd=nap_project, check=True).stdout
    assert "budget: " in text and "stopped asking for trials" in text

    proc = sweep_cli(
        "resume", first["sweep_id"], "--budget", "60s", "--json", cwd=nap_project, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    resumed = json.loads(proc.stdout)
    assert resumed["budget"]["wall_s"] == 60
    assert resumed["trials"]["complete"] > done  # the larger budget ran more trials
    # what was spent before counts: all runs together
    assert resumed["budget"]["spent"]["wall_s"] > budget["spent"]["wall_s"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--budget", "0"], "--budget"),
        (["--budget", "10x"], 'unknown unit "x"'),
        (["--budget-cpu-hours", "0"], "--budget-cpu-hours must be more than 0"),
        (["--target", "0.5"], "--target needs the one metric"),
    ],
)
def test_bad_forecast_options_are_one_error_line(
    nap_project: Path, args: list[str], says: str
) -> None:
    proc = sweep_cli(
        "nap", "--runtime", "local", "--trials", "2", "--sampler", "random", *args, cwd=nap_project
    )
    assert proc.returncode != 0
    assert proc.stderr.startswith("sweep: error: ") and says in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("sweep: error:") == 1
