"""A pipeline in containers: a file made in one container is the input of the next."""

from __future__ import annotations

import pytest

from tests.pipeline.support import pipeline_main, record

pytestmark = [pytest.mark.docker, pytest.mark.ray, pytest.mark.usefixtures("local_ray")]

YAML = """
- step:
    name: make
    image: sweeper-test/python:latest
    command: python3 -c "open('/valohai/outputs/blob.bin', 'wb').write(bytes(range(256)) * 40)"
- step:
    name: check
    image: sweeper-test/python:latest
    command: python3 ./check.py
    inputs:
      - name: blob
- pipeline:
    name: containers
    nodes:
      - {name: make, type: execution, step: make}
      - {name: check, type: execution, step: check}
    edges:
      - [make.output.*.bin, check.input.blob]
"""

CHECK_PY = """
import glob, hashlib, json
(path,) = glob.glob('/valohai/inputs/blob/*')
print(json.dumps({"sha256": hashlib.sha256(open(path, 'rb').read()).hexdigest(), "path": path}))
"""


def test_pipeline_in_docker(make_project, capsys) -> None:
    import json

    project = make_project(YAML, {"check.py": CHECK_PY})
    code, out, err = pipeline_main(
        [
            "run",
            "containers",
            "--runtime",
            "docker",
            "--pull",
            "never",
            "--json",
            "-f",
            str(project / "valohai.yaml"),
        ],
        capsys,
    )
    assert code == 0, err
    summary = json.loads(out)
    made = record(project, summary["nodes"]["make"]["execution_id"])
    checked = record(project, summary["nodes"]["check"]["execution_id"])
    (blob,) = made["outputs"]
    assert checked["metrics"]["sha256"] == blob["sha256"]
    assert checked["metrics"]["path"] == "/valohai/inputs/blob/blob.bin"
    assert checked["inputs"][0]["producer_execution_id"] == made["id"]
    assert checked["runtime"] == "docker" and checked["image_digest"]
