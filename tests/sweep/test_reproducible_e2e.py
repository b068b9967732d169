"""Reproducible parallel sweeps end to end: the real `sweep` command, embedded Ray, local steps.

The same seeded TPE sweep at `--parallel 3` (16 trials of a tiny step, so TPE models after
its 10 startup trials) runs on an idle machine and again with both cores kept busy and one
trial made slow: the parameters of every trial, read by trial number from the store, are the
same. A driver killed with `kill -9` after a few results and resumed proposes them too. And
`sweep verify SWEEP --sample N` re-runs trials whose step seeds itself with `VH_SEED`.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.coload import cpu_load
from tests.conftest import sweep_cli
from tests.faults.conftest import records, sweep_popen, wait_for

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(1500)]

STEP = """
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
      - name: y
        type: float
        min: 0
        max: 1
        default: 0.5
"""

#: With SLOW_DIR set, the first trial with x > 0.5 sleeps, so that later trials finish
#: before it; the step seeds its random numbers with VH_SEED, so that it reproduces.
TINY_PY = """
import argparse, json, os, random, time
p = argparse.ArgumentParser()
p.add_argument("--x", type=float)
p.add_argument("--y", type=float)
a = p.parse_args()
slow = os.environ.get("SLOW_DIR")
if slow and a.x > 0.5:
    try:
        os.close(os.open(os.path.join(slow, "taken"), os.O_CREAT | os.O_EXCL))
        time.sleep(8)
    except FileExistsError:
        pass
random.seed(int(os.environ["VH_SEED"]))
with open(os.path.join(os.environ["VH_OUTPUTS_DIR"], "noise.txt"), "w") as f:
    f.write(f"{random.random()}\\n")
print(json.dumps({"loss": (a.x - 0.3) ** 2 + (a.y - 0.6) ** 2}), flush=True)
"""

TRIALS = 16
SWEEP = (
    *("tiny", "--trials", str(TRIALS), "--parallel", "3", "--metric", "loss"),
    *("--sampler", "tpe", "--seed", "7", "--runtime", "local", "-p", "x=0..1", "-p", "y=0..1"),
)


def by_trial(project: Path) -> dict[int, dict[str, Any]]:
    """The parameters of each complete trial of the project's sweep, by trial number."""
    found = {}
    for record in records(project / ".sweeper"):
        if record.get("sweep_id") and record["status"] == "complete":
            found[record["trial_number"]] = record["parameters"]
    return found


def run_sweep(project: Path, *extra: str) -> dict[str, Any]:
    proc = sweep_cli(*SWEEP, *extra, "--json", cwd=project, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary: dict[str, Any] = json.loads(proc.stdout)
    assert summary["trials"]["complete"] == TRIALS
    return summary


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, dict[str, Any]]]:
    """The sweep on the machine as it is, with no slow trial: its project and parameters."""
    project = _project(tmp_path_factory.mktemp("baseline"))
    run_sweep(project)
    params = by_trial(project)
    assert sorted(params) == list(range(TRIALS))
    return project, params


def _project(root: Path) -> Path:
    (root / "valohai.yaml").write_text(STEP)
    (root / "tiny.py").write_text(TINY_PY)
    return root


def test_a_busy_machine_and_a_slow_trial_change_no_parameter(
    baseline: tuple[Path, dict[int, dict[str, Any]]], tmp_path: Path
) -> None:
    _, expected = baseline
    project = _project(tmp_path)
    slow = tmp_path / "slow"
    slow.mkdir()
    with cpu_load(2):
        run_sweep(project, "-e", f"SLOW_DIR={slow}")
    assert (slow / "taken").exists()  # a trial was slow indeed
    assert by_trial(project) == expected


def test_kill_9_after_some_results_then_resume_proposes_the_same_trials(
    baseline: tuple[Path, dict[int, dict[str, Any]]], tmp_path: Path
) -> None:
    _, expected = baseline
    project = _project(tmp_path)
    driver = sweep_popen(*SWEEP, "--json", cwd=project)

    def some_results() -> bool:
        assert driver.poll() is None, driver.communicate()
        return (project / ".sweeper").exists() and len(by_trial(project)) >= 5

    wait_for(some_results, timeout=400, interval=0.02)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.communicate(timeout=60)
    assert driver.returncode == -signal.SIGKILL
    assert len(by_trial(project)) < TRIALS

    resumed = sweep_cli("resume", "--json", cwd=project, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads(resumed.stdout)["trials"]["complete"] == TRIALS
    assert by_trial(project) == expected


def test_verify_of_a_sample_of_seeded_trials_reproduces(
    baseline: tuple[Path, dict[int, dict[str, Any]]],
) -> None:
    project, _ = baseline
    sweep_id = next(r["sweep_id"] for r in records(project / ".sweeper") if r.get("sweep_id"))
    proc = sweep_cli("verify", sweep_id, "--sample", "2", "--json", cwd=project, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert [found["reproduced"] for found in report] == [True, True]
    assert all(
        any(check["name"] == "output.noise.txt" and check["equal"] for check in found["checks"])
        for found in report
    )
    # the first and the last trial, each re-run with its own VH_SEED
    originals = {r["id"]: r for r in records(project / ".sweeper")}
    numbers = [originals[found["original"]]["trial_number"] for found in report]
    assert numbers == [0, TRIALS - 1]
    seeds = {originals[found["rerun"]]["environment"]["VH_SEED"] for found in report}
    assert len(seeds) == 2
