"""A file of the user's own machine given by its absolute path on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sweeper.config import parse_config
from sweeper.errors import InputError
from sweeper.execution.inputs import fetch_inputs, resolve_inputs
from tests.conftest import sweep_cli

STEP = """
- step:
    name: count
    image: sweeper-test/python:latest
    command: python3 ./count.py
    inputs:
      - name: data
        default: data.csv
"""

COUNT_PY = """
import json, os
path = os.path.join(os.environ["VH_INPUTS_DIR"], "data", "data.csv")
with open(path) as f:
    print(json.dumps({"rows": len(f.read().splitlines())}))
"""


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A CSV file outside the project folder, as a user has in their home folder."""
    folder = tmp_path / "home" / "me"
    folder.mkdir(parents=True)
    (folder / "data.csv").write_text("a,1\nb,2\nc,3\n")
    return folder / "data.csv"


def test_an_absolute_path_given_becomes_a_file_uri(tmp_path: Path, elsewhere: Path) -> None:
    step = parse_config(STEP).get_step("count")
    uris = resolve_inputs(step.inputs, {"data": [str(elsewhere)]}, project_dir=tmp_path / "proj")
    assert uris == {"data": [elsewhere.as_uri()]}
    files = fetch_inputs(
        uris,
        step.inputs,
        inputs_dir=tmp_path / "inputs",
        project_dir=tmp_path / "proj",
        cache_dir=tmp_path / "cache",
    )
    assert [(f.name, f.path, f.size) for f in files] == [("data", "data/data.csv", 12)]
    assert (tmp_path / "inputs" / "data" / "data.csv").read_text() == "a,1\nb,2\nc,3\n"


def test_an_absolute_default_in_valohai_yaml_is_still_refused(tmp_path: Path) -> None:
    step = parse_config(STEP.replace("default: data.csv", "default: /etc/passwd")).get_step("count")
    with pytest.raises(InputError, match="absolute path /etc/passwd"):
        resolve_inputs(step.inputs, {}, project_dir=tmp_path)


def test_sweep_run_reads_a_file_given_by_its_absolute_path(make_project, elsewhere: Path) -> None:
    project = make_project(STEP, {"count.py": COUNT_PY})
    proc = sweep_cli(
        "run",
        "count",
        "--input",
        f"data={elsewhere}",
        "--runtime",
        "local",
        "--json",
        "-f",
        str(project / "valohai.yaml"),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["metrics"] == {"rows": 3}
    (data,) = record["inputs"]
    assert data["uri"] == elsewhere.as_uri()
