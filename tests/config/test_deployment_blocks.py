"""Top-level ``deployment`` blocks: read as valohai-yaml reads them, linted, and the defaults
``sweep deploy --deployment NAME`` takes from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweeper.config import lint_text
from sweeper.config.endpoint import DeploymentBlock, deployment_block
from sweeper.errors import ConfigError
from tests.conftest import sweep_cli

BLOCKS = """\
- step: {name: noop, image: python:3.11, command: echo hi}
- endpoint: {name: greet, image: python:3.11, wsgi: "app:application"}
- deployment:
    name: staging
    defaults: {target: old-cluster}
- deployment:
    name: staging
    defaults: {target: k8s-eu, replicas: 3, runtime: local, anything: Valohai takes it}
- deployment:
    name: bare
- deployment:
    name: broken
    defaults: {target: k8s-eu, replicas: 0, runtime: [local]}
"""


def test_a_declared_block_gives_its_defaults_and_the_last_of_a_name_wins() -> None:
    assert deployment_block(BLOCKS, "staging") == DeploymentBlock(
        "staging", target="k8s-eu", replicas=3, runtime="local"
    )
    assert deployment_block(BLOCKS, "bare") == DeploymentBlock("bare")
    assert deployment_block(BLOCKS, "undeclared") is None


def test_bad_sweeper_defaults_warn_in_lint_and_block_only_their_deployment() -> None:
    found = [str(p) for p in lint_text(BLOCKS, "valohai.yaml")]
    assert found == [
        'valohai.yaml:10: warning: deployment "bare": no defaults.target: Valohai cannot create '
        "the deployment when a pipeline needs it",
        'valohai.yaml:13: warning: deployment "broken": defaults: replicas must be at least 1',
        'valohai.yaml:13: warning: deployment "broken": defaults: runtime must be a string',
    ]
    with pytest.raises(ConfigError, match=r'"broken": defaults: replicas must be at least 1'):
        deployment_block(BLOCKS, "broken")


def test_a_name_sweeper_cannot_serve_is_a_lint_warning() -> None:
    text = "- deployment:\n    name: Prod EU\n    defaults: {target: x}\n"
    (problem,) = lint_text(text, "valohai.yaml")
    assert problem.level == "warning"
    assert 'deployment name "Prod EU" is not one sweeper can serve' in problem.message


def test_sweep_deploy_refuses_a_block_it_cannot_use_before_anything_runs(tmp_path: Path) -> None:
    (tmp_path / "valohai.yaml").write_text(BLOCKS)
    proc = sweep_cli("deploy", "greet", "--deployment", "broken", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("sweep: error:") == 1
    assert "replicas must be at least 1" in proc.stderr and "Traceback" not in proc.stderr
