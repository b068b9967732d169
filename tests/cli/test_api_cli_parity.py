"""``sweep run --json`` and ``sweeper.run(...).to_dict()`` give the same record for the same step.

The command is a thin wrapper over the API: both write the same keys, the same status and
the same parameters to the same store, so a script can switch between them freely.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import sweeper
from tests.conftest import EXAMPLE, sweep_cli

# sweeper.run_sweep starts an embedded Ray and keeps it until the process (pytest's) ends
# (and the CLI's sweep gets up to 600 s)
pytestmark = [pytest.mark.usefixtures("no_ray_left"), pytest.mark.timeout(900)]

#: What differs between two executions of the same spec by nature.
PER_EXECUTION = {
    "id", "counter", "created_at", "started_at", "ended_at", "duration_s", "host", "usage",
}  # fmt: skip


def test_sweep_run_json_and_sweeper_run_agree(tmp_path: Path) -> None:
    project = tmp_path / "configs"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".sweeper", "__pycache__"))
    config = project / "valohai.yaml"

    proc = sweep_cli(
        "run",
        "train-model",
        "--runtime",
        "local",
        "-p",
        "epochs=2",
        "-p",
        "learning_rate=0.3",
        "--json",
        "-f",
        str(config),
    )
    assert proc.returncode == 0, proc.stderr
    from_cli = json.loads(proc.stdout)
    from_api = sweeper.run(
        "train-model",
        parameters={"epochs": 2, "learning_rate": 0.3},
        runtime="local",
        config=config,
    ).to_dict()

    assert from_cli.keys() == from_api.keys()
    assert from_cli["status"] == from_api["status"] == "complete"
    assert from_api["counter"] == from_cli["counter"] + 1  # one store, one counter
    for key in from_cli.keys() - PER_EXECUTION - {"spec", "metrics", "outputs"}:
        assert from_cli[key] == from_api[key], key
    # the same spec: same code snapshot, command, parameters, runtime -> the same hash
    assert from_cli["spec_hash"] == from_api["spec_hash"]
    assert from_cli["metrics"].keys() == from_api["metrics"].keys()
    assert [o["path"] for o in from_cli["outputs"]] == [o["path"] for o in from_api["outputs"]]


def test_sweep_json_and_run_sweep_agree(tmp_path: Path) -> None:
    project = tmp_path / "configs"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".sweeper", "__pycache__"))
    config = project / "valohai.yaml"
    space = {"learning_rate": "log:0.01..0.5", "epochs": "2"}

    proc = sweep_cli(
        "train-model",
        "--trials",
        "2",
        "--metric",
        "accuracy",
        "--runtime",
        "local",
        *[f"-p{name}={value}" for name, value in space.items()],
        "--json",
        "-f",
        str(config),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    from_cli = json.loads(proc.stdout)
    result = sweeper.run_sweep(
        "train-model", trials=2, metrics=["accuracy"], specs=space, runtime="local", config=config
    )
    from_api = result.to_dict()

    assert from_cli.keys() == from_api.keys()
    assert from_cli["status"] == from_api["status"] == "complete"
    assert (
        from_cli["trials"]
        == from_api["trials"]
        == {"complete": 2, "error": 0, "pruned": 0, "running": 0}
    )
    assert from_cli["best"].keys() == from_api["best"].keys()
    assert from_cli["best"]["parameters"].keys() == from_api["best"]["parameters"].keys()
    assert from_cli["sweep_id"] != from_api["sweep_id"]
    # both sweeps are in the same store, as `sweep status` reads them
    status = json.loads(sweep_cli("status", "--json", "-f", str(config), check=True).stdout)
    assert status["sweep_id"] == result.sweep_id and status["status"] == "complete"
