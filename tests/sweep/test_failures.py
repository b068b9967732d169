"""Failures say why: failed trials grouped by reason at the end of a sweep, in `sweep status`
and in `--json`; a sweep in which no trial completed fails. Real CLI, real Ray, real store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import sweeper.results
from sweeper.store import Store
from sweeper.sweep.failures import FailureGroup, error_line, reason_key
from tests.cli import test_sweep_options
from tests.conftest import sweep_cli

STEP = """
- step:
    name: train
    image: sweeper-test/python:latest
    command: python3 ./train.py {parameters}
    parameters:
      - {name: x, type: float, min: 0, max: 1, default: 0.5}
- task:
    name: mixed
    step: train
    type: manual_search
    parameter-sets:
      [{x: 0.9}, {x: 0.1}, {x: 0.2}, {x: 0.5}, {x: 0.25}, {x: 0.95}, {x: 0.15}, {x: 0.6}]
- task:
    name: hopeless
    step: train
    type: manual_search
    parameter-sets: [{x: 0.9}, {x: 0.1}, {x: 0.2}]
"""

# x < 0.3 raises with the value in the message (one reason, four values); x > 0.8 exits 3.
# The first trial exits 3, so most-common-first is not first-seen order.
TRAIN_PY = """
import argparse, json, sys
p = argparse.ArgumentParser(); p.add_argument("--x", type=float); x = p.parse_args().x
print(json.dumps({"epoch": 0}), flush=True)
if x < 0.3:
    raise ValueError(f"learning rate must be at least 0.3, got {x}")
if x > 0.8:
    print(f"diverged at x={x}", file=sys.stderr)
    sys.exit(3)
print(json.dumps({"loss": x}))
"""

RAISES = "exit code 1: ValueError: learning rate must be at least 0.3, got "
EXITS = "exit code 3: diverged at x="


ray_head = test_sweep_options.ray_head  # the same fixture: a Ray head for this module
# each `sweep` below gets up to 600 s: the test's limit is above that
pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(900)]


def sweep(project: Path, head: str, *args: str) -> Any:
    """Run ``sweep ARGS`` in ``project`` on the head; the completed process."""
    return sweep_cli(*args, cwd=project, env={"RAY_ADDRESS": head}, timeout=600)


def run_task(project: Path, head: str, task: str, *extra: str, as_json: bool = True) -> Any:
    return sweep(
        project,
        head,
        "train",
        "--task",
        task,
        "--runtime",
        "local",
        "--parallel",
        "2",
        "--metric",
        "loss",
        *extra,
        *(["--json"] if as_json else []),
    )


def record(project: Path, execution_id: str) -> dict[str, Any]:
    store = Store.open(project / ".sweeper")
    return store.read_json(f"{store.execution_dir(execution_id)}/execution.json")  # type: ignore[no-any-return]


def check_groups(project: Path, failures: list[dict[str, Any]]) -> None:
    """Two groups, the ValueError first (4 trials) then exit 3 (2), each example in its group."""
    assert [g["count"] for g in failures] == [4, 2], failures
    assert failures[0]["reason"].startswith(RAISES), failures
    assert failures[1]["reason"].startswith(EXITS), failures
    raised = record(project, failures[0]["example_execution_id"])
    assert raised["status"] == "error" and raised["exit_code"] == 1
    assert raised["parameters"]["x"] < 0.3
    assert failures[0]["reason"] == RAISES + str(raised["parameters"]["x"])
    exited = record(project, failures[1]["example_execution_id"])
    assert exited["status"] == "error" and exited["exit_code"] == 3
    assert exited["parameters"]["x"] > 0.8


def test_failed_trials_are_grouped_by_reason_most_common_first(make_project, ray_head) -> None:
    project = make_project(STEP, {"train.py": TRAIN_PY})
    proc = run_task(project, ray_head, "mixed")
    assert proc.returncode == 0, proc.stderr  # two trials completed: the sweep did its job
    summary = json.loads(proc.stdout)
    assert summary["status"] == "complete"
    assert summary["trials"]["complete"] == 2 and summary["trials"]["error"] == 6
    check_groups(project, summary["failures"])

    status = json.loads(sweep(project, ray_head, "status", "--json").stdout)
    assert status["failures"] == summary["failures"]
    assert sweeper.results.open(project / ".sweeper").failures(summary["sweep_id"]) == [
        FailureGroup(**g) for g in summary["failures"]
    ]

    text = sweep(project, ray_head, "status").stdout
    lines = [line.strip() for line in text.splitlines()]
    first, second = (
        f"{g['count']} x {g['reason']} (e.g. {g['example_execution_id']})"
        for g in summary["failures"]
    )
    assert lines.index(first) < lines.index(second), text


def test_the_end_of_sweep_summary_lists_the_reasons(make_project, ray_head) -> None:
    project = make_project(STEP, {"train.py": TRAIN_PY})
    proc = run_task(project, ray_head, "mixed", as_json=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = lines.index("failures by reason:")
    assert lines[header + 1].startswith(f"  4 x {RAISES}"), proc.stdout
    assert lines[header + 2].startswith(f"  2 x {EXITS}"), proc.stdout


def test_a_sweep_in_which_no_trial_completed_fails_and_says_why(make_project, ray_head) -> None:
    project = make_project(STEP, {"train.py": TRAIN_PY})
    proc = run_task(project, ray_head, "hopeless")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("sweep: error: ")]
    assert len(errors) == 1, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["status"] == "failed"
    assert summary["trials"]["complete"] == 0 and summary["trials"]["error"] == 3
    assert "none of its 3 finished trials completed" in errors[0]
    assert f"2 x {RAISES}" in errors[0] and f"1 x {EXITS}" in errors[0], errors[0]
    assert errors[0].index(RAISES) < errors[0].index(EXITS)

    sweep_id = summary["sweep_id"]
    saved = json.loads((project / ".sweeper" / "sweeps" / sweep_id / "sweep.json").read_text())
    assert saved["status"] == "failed"
    rows = sweeper.results.open(project / ".sweeper").sweeps()
    assert rows[rows["sweep_id"] == sweep_id]["status"].tolist() == ["failed"]
    status = json.loads(sweep(project, ray_head, "status", "--json").stdout)
    assert status["status"] == "failed"
    assert [g["count"] for g in status["failures"]] == [2, 1]


def test_exceeding_max_failures_names_the_reasons(make_project, ray_head) -> None:
    project = make_project(STEP, {"train.py": TRAIN_PY})
    proc = run_task(project, ray_head, "mixed", "--parallel", "1", "--max-failures", "1")
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("sweep: error: ")]
    assert len(errors) == 1 and "--max-failures 1" in errors[0], proc.stderr
    # x=0.9 exited 3, x=0.1 raised: one of each, and nothing ran after the second
    assert f"1 x {RAISES}0.1" in errors[0] and f"1 x {EXITS}0.9" in errors[0], errors[0]
    assert json.loads(proc.stdout)["status"] == "failed"


def test_trials_failing_on_a_bad_input_say_which_input(example_project, ray_head) -> None:
    # a path inside the project passes the check before the first trial; reading it fails
    proc = sweep(
        example_project,
        ray_head,
        "train-model",
        "--trials",
        "2",
        "--runtime",
        "local",
        "--input",
        "dataset=data/missing.csv",
        "--json",
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("sweep: error: ")]
    assert len(errors) == 1, proc.stderr
    assert '2 x input "dataset": no such file data/missing.csv' in errors[0], errors[0]
    summary = json.loads(proc.stdout)
    assert summary["status"] == "failed"
    assert [(g["count"], g["reason"]) for g in summary["failures"]] == [
        (2, 'input "dataset": no such file data/missing.csv')
    ]


def test_reasons_that_differ_only_in_values_group_together() -> None:
    log = 'Traceback (most recent call last):\n  File "/tmp/a/train.py", line 5\nValueError: lr -0.25 < 0\n{"loss": 1}\n'
    assert error_line(log) == "ValueError: lr -0.25 < 0"
    # the exception wins over what the step printed after it (a cleanup line)
    assert error_line("KeyError: 'lr'\ncleaning up\n") == "KeyError: 'lr'"
    assert error_line("loading\nout of patience\n\n") == "out of patience"
    assert reason_key("exit code 1: ValueError: lr -0.25 at /tmp/a/b.csv") == reason_key(
        "exit code 1: ValueError: lr 3e-4 at /tmp/c/d.csv"
    )
    assert reason_key("exit code 1: boom") != reason_key("exit code 3: boom")
