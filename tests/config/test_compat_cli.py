"""What a user sees on a file with a broken pipeline, and on files Valohai accepts."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.conftest import sweep_cli

COMPAT = Path(__file__).parent / "compat"
MESSAGE_RE = re.compile(r"^\S+:\d+: (error|warning): \S")


def project(tmp_path: Path, name: str) -> Path:
    """A project folder whose valohai.yaml is compat file ``name``."""
    path = tmp_path / "valohai.yaml"
    shutil.copy(COMPAT / name, path)
    return path


def test_a_broken_pipeline_does_not_stop_unrelated_steps(tmp_path: Path) -> None:
    config = project(tmp_path, "class1-broken-pipeline.yaml")
    run = sweep_cli("run", "train", "--dry-run", "-p", "lr=0.5", "-f", str(config))
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "pip install -r requirements.txt",
        "python train.py --lr=0.5 --optimizer=adam",
    ]
    lint = sweep_cli("lint", str(config))
    assert lint.returncode == 1
    assert lint.stdout.splitlines() == [
        f'{config}:25: error: pipeline "broken": edge [prepare.output.*.csv, trian.input.data]: '
        'target node "trian" does not exist; known nodes: prepare, train'
    ]
    # Running the pipeline itself gives the very message lint gives.
    pipeline = sweep_cli("pipeline", "run", "broken", "--runtime", "local", "-f", str(config))
    assert pipeline.returncode != 0
    assert lint.stdout.strip() in pipeline.stderr
    assert "Traceback" not in pipeline.stderr


def test_lint_accepts_what_valohai_accepts_and_warns_where_it_is_likely_a_mistake(
    tmp_path: Path,
) -> None:
    config = project(tmp_path, "class2-lenient-pipelines.yaml")
    lint = sweep_cli("lint", str(config))
    assert lint.returncode == 0, lint.stdout
    lines = lint.stdout.splitlines()
    assert lines and all(MESSAGE_RE.match(line) for line in lines), lines
    assert any('has no input "modle" (did you mean "models"?)' in line for line in lines)
    assert not any("deployment node" in line for line in lines)  # they run: nothing to warn


def test_an_endpoint_valohai_refuses_is_an_error_but_the_step_runs(tmp_path: Path) -> None:
    config = project(tmp_path, "class6-endpoint-name.yaml")
    lint = sweep_cli("lint", str(config))
    assert lint.returncode == 1
    assert lint.stdout.splitlines() == [
        f'{config}:9: error: endpoint "Road-condition": name "Road-condition" must be lowercase, '
        "start with a letter and contain only letters, digits and dashes (it is part of the "
        "endpoint's URL)"
    ]
    run = sweep_cli("run", "train", "--dry-run", "-f", str(config))
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["python train.py '--road=main street'"]
