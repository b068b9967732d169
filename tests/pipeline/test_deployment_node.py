"""A deployment node (which Valohai runs and sweeper cannot) fails alone, with "not supported"."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipeline.support import PROBE_PY, PROBE_STEP, run_json

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("local_ray")]

DEPLOYING = (
    PROBE_STEP
    + """
- endpoint:
    name: predict
    image: python:3.12
    wsgi: predict:app
- pipeline:
    name: train-and-deploy
    nodes:
      - {name: train, type: execution, step: probe}
      - {name: deploy, type: deployment, deployment: production, endpoints: [predict], on-error: stop-next}
      - {name: notify, type: execution, step: probe}
      - {name: after, type: execution, step: probe}
    edges:
      - [train.output.model*, deploy.file.predict.model]
      - [deploy.deployment.id, notify.parameter.marker]
      - [train.output.model*, after.input.model]
"""
)


def test_the_deployment_node_alone_is_not_supported(make_project, capsys) -> None:
    project: Path = make_project(DEPLOYING, {"probe.py": PROBE_PY})
    code, summary = run_json(project, capsys, "train-and-deploy")
    nodes = summary["nodes"]
    # The deployment node ends with "not supported"; with on-error: stop-next only what it
    # feeds is skipped, and the rest of the pipeline runs.
    assert nodes["deploy"]["status"] == "error"
    assert "deployment nodes are not supported by sweeper" in nodes["deploy"]["error"]
    assert nodes["notify"]["status"] == "skipped"
    assert nodes["train"]["status"] == nodes["after"]["status"] == "complete"
    assert code != 0 and summary["status"] == "error"
