"""How a sweep runs its trials, through the real command line: pruners, failures, actors,
reuse, inputs and environment variables.

Real Ray (a head the sweeps join), real Optuna, real Parquet store; the trial scripts are
written so that the behaviour under test is the only way the assertions can hold (a trial
that should be pruned blocks until it is stopped; a trial prints the Ray worker it ran in).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sweeper.sweep.reproducible import trial_seed
from tests.cli import test_sweep_options
from tests.cli.test_sweep_options import records, sweep, sweep_json

ray_head = test_sweep_options.ray_head  # the same fixture: a Ray head for this module

pytestmark = [pytest.mark.ray, pytest.mark.slow]

PRUNE_STEP = """
- step:
    name: train
    image: sweeper-test/python:latest
    command: python3 ./train.py {parameters}
    parameters:
      - {name: x, type: float, min: 0, max: 1, default: 0.5}
    time-limit: 60
- task:
    name: ordered
    step: train
    type: manual_search
    parameter-sets:
      - {x: 0.1}
      - {x: 0.2}
      - {x: 0.9}
      - {x: 0.8}
"""

#: Two reports of loss = x; a trial with x >= 0.5 then waits to be stopped (a pruned trial
#: ends here; an unpruned one would hit the time limit and fail the test).
PRUNE_PY = """
import argparse, json, time
p = argparse.ArgumentParser(); p.add_argument("--x", type=float); x = p.parse_args().x
for step in range(2):
    print(json.dumps({"step": step, "loss": x}), flush=True)
if x >= 0.5:
    time.sleep(600)
"""


@pytest.mark.parametrize("pruner", ["asha", "hyperband"])
def test_pruner_stops_trials_worse_than_the_ones_before(
    pruner: str,
    make_project,
    ray_head: str,
) -> None:
    project = make_project(PRUNE_STEP, {"train.py": PRUNE_PY})
    summary = sweep_json(
        project,
        ray_head,
        "train",
        "--task",
        "ordered",
        "--sampler",
        "random",
        "--pruner",
        pruner,
        "--metric",
        "loss",
        "--parallel",
        "1",
    )
    # the two good trials complete and set the bar; both worse ones are stopped at it
    assert summary["trials"] == {"complete": 2, "error": 0, "pruned": 2, "running": 0}
    by_x = {r["parameters"]["x"]: r for r in records(project, summary["sweep_id"])}
    assert {x: r["status"] for x, r in by_x.items()} == {
        0.1: "complete",
        0.2: "complete",
        0.9: "pruned",
        0.8: "pruned",
    }
    assert by_x[0.9]["metrics"]["loss"] == 0.9  # it reported before it was stopped


FAIL_STEP = """
- step:
    name: train
    image: sweeper-test/python:latest
    command: python3 ./train.py {parameters}
    parameters:
      - {name: x, type: float, min: 0, max: 1, default: 0.5}
- task:
    name: failing
    step: train
    type: manual_search
    parameter-sets:
      - {x: 0.1}
      - {x: 0.9}
      - {x: 0.95}
      - {x: 0.2}
      - {x: 0.3}
"""

FAIL_PY = """
import argparse, json, sys
p = argparse.ArgumentParser(); p.add_argument("--x", type=float); x = p.parse_args().x
if x > 0.5:
    sys.exit(3)
print(json.dumps({"loss": x}))
"""


def test_max_failures_stops_the_sweep_with_a_clear_error(make_project, ray_head: str) -> None:
    project = make_project(FAIL_STEP, {"train.py": FAIL_PY})
    proc = sweep(
        project,
        ray_head,
        "train",
        "--task",
        "failing",
        "--sampler",
        "random",
        "--metric",
        "loss",
        "--parallel",
        "1",
        "--max-failures",
        "1",
        "--runtime",
        "local",
        "--json",
    )
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("sweep: error: ")]
    assert len(errors) == 1 and "--max-failures 1" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    summary = json.loads(proc.stdout)
    # the second failure is one more than allowed: nothing runs after it
    assert summary["trials"] == {"complete": 1, "error": 2, "pruned": 0, "running": 0}
    assert summary["status"] == "failed"
    assert [r["parameters"]["x"] for r in records(project, summary["sweep_id"])] == [
        0.1,
        0.9,
        0.95,
    ]
    status = json.loads(sweep(project, ray_head, "status", "--json").stdout)
    assert status["status"] == "failed"


def test_failures_up_to_max_failures_let_the_sweep_finish(make_project, ray_head: str) -> None:
    project = make_project(FAIL_STEP, {"train.py": FAIL_PY})
    summary = sweep_json(
        project,
        ray_head,
        "train",
        "--task",
        "failing",
        "--sampler",
        "random",
        "--metric",
        "loss",
        "--parallel",
        "1",
        "--max-failures",
        "2",
    )
    assert summary["trials"] == {"complete": 3, "error": 2, "pruned": 0, "running": 0}
    assert summary["best"]["parameters"] == {"x": 0.1}


PID_STEP = """
- step:
    name: where
    image: sweeper-test/python:latest
    command: python3 ./where.py {parameters}
    parameters:
      - {name: x, type: float, min: 0, max: 1, default: 0.5}
"""

#: Prints the pid of the Ray worker (the actor) it runs under: its nearest `ray::` ancestor.
PID_PY = """
import json, os
pid = os.getppid()
while pid > 1:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        name = f.read().split(b"\\0")[0].decode(errors="replace")
    if name.startswith("ray::"):
        break
    with open(f"/proc/{pid}/stat") as f:
        pid = int(f.read().rsplit(")", 1)[1].split()[1])
print(json.dumps({"loss": 1.0, "actor_pid": pid, "actor": name}))
"""


def _actor_pids(project: Path, head: str, *extra: str) -> list[int]:
    summary = sweep_json(
        project,
        head,
        "where",
        "--trials",
        "3",
        "--parallel",
        "1",
        "--sampler",
        "random",
        "--metric",
        "loss",
        *extra,
    )
    rows = records(project, summary["sweep_id"])
    assert len(rows) == 3 and all(r["metrics"]["actor"].startswith("ray::") for r in rows)
    return [int(r["metrics"]["actor_pid"]) for r in rows]


def test_actors_are_reused_unless_fresh_actors(make_project, ray_head: str) -> None:
    project = make_project(PID_STEP, {"where.py": PID_PY})
    reused = _actor_pids(project, ray_head)
    assert len(set(reused)) == 1, reused  # one actor ran the three trials, one after another
    fresh = _actor_pids(project, ray_head, "--fresh-actors")
    assert len(set(fresh)) == 3, fresh  # a new actor (a new Ray worker) for each trial
    assert not set(fresh) & set(reused)


ENV_STEP = """
- step:
    name: read
    image: sweeper-test/python:latest
    command: python3 ./read.py {parameters}
    parameters:
      - {name: x, type: float, min: 0, max: 1, default: 0.5}
    inputs:
      - name: data
"""

#: Echoes the input it was given and an environment variable; counts its real runs in RUNS.
READ_PY = """
import glob, json, os, uuid
(path,) = glob.glob(os.path.join(os.environ["VH_INPUTS_DIR"], "data", "*"))
with open(path) as f:
    data = f.read().strip()
runs = os.environ.get("RUNS")
if runs:
    open(os.path.join(runs, uuid.uuid4().hex), "w").close()
print(json.dumps({"loss": 1.0, "data": data, "mark": os.environ.get("MARK", "")}))
"""


def test_input_and_env_reach_every_trial(make_project, ray_head: str, tmp_path: Path) -> None:
    project = make_project(ENV_STEP, {"read.py": READ_PY})
    data = tmp_path / "numbers.txt"
    data.write_text("42\n")
    summary = sweep_json(
        project,
        ray_head,
        "read",
        "--trials",
        "3",
        "--sampler",
        "random",
        "--metric",
        "loss",
        "--input",
        f"data={data.as_uri()}",
        "-e",
        "MARK=hello there",
    )
    rows = records(project, summary["sweep_id"])
    assert len(rows) == 3
    for row in rows:
        assert row["metrics"]["data"] == "42" and row["metrics"]["mark"] == "hello there"
        (given,) = row["inputs"]
        assert given["name"] == "data" and given["uri"] == data.as_uri()
        # and the trial's own seed (no --seed: derived from the sweep's id), recorded too
        seed = str(trial_seed(summary["sweep_id"], row["trial_number"]))
        assert row["environment"] == {"MARK": "hello there", "VH_SEED": seed}


def test_a_bad_input_fails_the_sweep_before_any_trial(
    make_project, ray_head: str, tmp_path: Path
) -> None:
    project = make_project(ENV_STEP, {"read.py": READ_PY})
    outside = tmp_path / "numbers.txt"
    outside.write_text("1\n")
    # an absolute path is the user's own file (file://); these are refused up front
    bad = (
        ("data=../numbers.txt", "outside the project folder"),
        ("data=ftp://example.com/numbers.txt", 'unsupported URI scheme "ftp"'),
        ("dta=x.txt", 'unknown input "dta"'),
    )
    for given, says in bad:
        proc = sweep(
            project, ray_head, "read", "--trials", "2", "--metric", "loss", "--input", given
        )
        assert proc.returncode != 0
        assert proc.stderr.startswith("sweep: error: ")
        assert says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (project / ".sweeper" / "executions").exists()


def test_reuse_answers_identical_trials_from_the_store(
    make_project,
    ray_head: str,
    tmp_path: Path,
) -> None:
    project = make_project(ENV_STEP, {"read.py": READ_PY})
    data = tmp_path / "numbers.txt"
    data.write_text("7\n")
    runs = tmp_path / "runs"
    runs.mkdir()
    args = [
        "read",
        "--sampler",
        "grid",
        "-p",
        "x=0.1,0.2",
        "--metric",
        "loss",
        "--input",
        f"data={data.as_uri()}",
        "-e",
        f"RUNS={runs}",
    ]
    first = sweep_json(project, ray_head, *args)
    assert len(list(runs.iterdir())) == 2
    second = sweep_json(project, ray_head, *args, "--reuse")
    assert second["trials"]["complete"] == 2
    assert len(list(runs.iterdir())) == 2  # the step did not run again
    before = {r["parameters"]["x"]: r["id"] for r in records(project, first["sweep_id"])}
    after: dict[float, Any] = {
        r["parameters"]["x"]: r for r in records(project, second["sweep_id"])
    }
    assert {x: r["reused_from"] for x, r in after.items()} == before
    assert all(r["metrics"]["data"] == "7" for r in after.values())
    # without --reuse the same sweep runs the step again
    sweep_json(project, ray_head, *args)
    assert len(list(runs.iterdir())) == 4


CRASH_STEP = """
- step:
    name: crash
    image: sweeper-test/python:latest
    command: python3 ./crash.py {parameters}
    parameters:
      - {name: x, type: float, min: 0, max: 1, default: 0.5}
"""

#: Kills the step's shell from under it: the runtime sees it killed from outside, the
#: infrastructure failure a dying node causes, which a sweep retries.
CRASH_PY = """
import os, signal, sys
with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
    if b"sh" not in f.read().split(b"\\0")[0]:
        sys.exit("the parent is not the step's shell")
os.kill(os.getppid(), signal.SIGKILL)
"""


def test_max_retries_bounds_the_retries_of_a_crashing_trial(make_project, ray_head: str) -> None:
    project = make_project(CRASH_STEP, {"crash.py": CRASH_PY})
    proc = sweep(
        project,
        ray_head,
        "crash",
        "--trials",
        "1",
        "--sampler",
        "random",
        "--metric",
        "loss",
        "--max-retries",
        "1",
        "--runtime",
        "local",
        "--json",
    )
    summary = json.loads(proc.stdout)
    assert proc.returncode != 0  # no trial completed
    assert summary["trials"] == {"complete": 0, "error": 1, "pruned": 0, "running": 0}
    rows = records(project, summary["sweep_id"])
    # the first run and one retry, with the same parameters, then the trial is an error
    assert [r["attempt"] for r in rows] == [1, 2]
    assert {r["status"] for r in rows} == {"crashed"}
    assert rows[0]["parameters"] == rows[1]["parameters"]
