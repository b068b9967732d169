"""Output properties (``valohai.metadata.jsonl``): recorded, queryable, and never fatal.

Real processes: the steps run through `sweep run --runtime local`, one of them written with
valohai-utils itself; the store is read back with pyarrow and pandas as a user would.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import sweeper.results
from sweeper.execution.properties import version_requests
from sweeper.store import Store
from tests.conftest import sweep_cli
from tests.execution.dataset_steps import dataset_project

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def project(make_project: Any) -> Path:
    return dataset_project(make_project)


def _run(project: Path, step: str, *args: str) -> dict[str, Any]:
    proc = sweep_cli(
        "run", step, *args, "--runtime", "local", "--json", "-f", str(project / "valohai.yaml"),
        cwd=project, timeout=280,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def test_valohai_utils_properties_reach_the_record_the_artifacts_and_the_commands(
    project: Path,
) -> None:
    record = _run(project, "make")
    assert record["status"] == "complete"
    outputs = {o["path"]: o for o in record["outputs"]}
    # the properties file is read, not stored as an output
    assert sorted(outputs) == ["more/test.csv", "notes.txt", "train.csv"]
    assert outputs["train.csv"]["properties"] == {
        "rows": 1,
        "split": "train",
        "valohai.dataset-versions": ["dataset://shapes/v1"],
    }
    assert "properties" not in outputs["notes.txt"]
    assert "warnings" not in record

    # queryable: the artifacts dataset's properties column, read with pyarrow alone
    store = project / ".sweeper"
    table = pq.read_table(store / "datasets" / "artifacts")
    by_name = {row["name"]: row for row in table.to_pylist()}
    assert json.loads(by_name["train.csv"]["properties"])["split"] == "train"
    assert by_name["notes.txt"]["properties"] is None
    # ... and through the notebook API, decoded
    frame = sweeper.results.open(store).artifacts(record["id"])
    decoded = dict(zip(frame["name"], frame["properties"], strict=True))
    assert decoded["train.csv"]["rows"] == 1 and decoded["notes.txt"] is None

    listed = sweep_cli("outputs", record["id"], "--json", cwd=project, check=True).stdout
    assert {o["path"]: o.get("properties") for o in json.loads(listed)} == {
        path: item.get("properties") for path, item in outputs.items()
    }
    shown = sweep_cli("show", record["id"], cwd=project, check=True).stdout
    assert '"split": "train"' in shown and "dataset://shapes/v1" in shown


def test_unusable_properties_are_warnings_and_cost_nothing_else(project: Path) -> None:
    record = _run(project, "by-hand")
    assert record["status"] == "complete"
    outputs = {o["path"]: o for o in record["outputs"]}
    assert sorted(outputs) == ["big.txt", "good.txt", "plain.txt"]
    # the good line is kept, merged with a later line for the same file
    assert outputs["good.txt"]["properties"] == {
        "score": 0.5,
        "valohai.dataset-versions": ["dataset://bad"],
    }
    assert "properties" not in outputs["big.txt"] and "properties" not in outputs["plain.txt"]
    warnings = record["warnings"]
    expected = [
        "line 2: not JSON",
        "line 3: not an object",
        "properties for missing.txt, which is not an output",
        "the properties of big.txt take",
        'line 6: "../escape.txt" is not a path under outputs/',
        'good.txt: valohai.dataset-versions entry "dataset://bad" is not dataset://NAME/VERSION',
    ]
    for text in expected:
        assert sum(text in w for w in warnings) == 1, (text, warnings)
    assert len(warnings) == len(expected), warnings
    assert "dataset_versions" not in record
    log = sweep_cli("logs", record["id"], cwd=project, check=True).stdout
    assert sum(line.startswith("sweeper: warning: ") for line in log.splitlines()) == len(expected)
    # the executions row keeps the warnings too
    rows = Store.open(project / ".sweeper").read_dataset("executions").to_pylist()
    assert json.loads(rows[-1]["warnings"]) == warnings


def test_a_dataset_version_entry_may_be_an_object_with_a_uri() -> None:
    # valohai-utils writes strings; Valohai also takes {"uri": ..., "targeting_aliases": ...}
    outputs = [
        {"path": "a", "properties": {"valohai.dataset-versions": [{"uri": "dataset://d/v1"}]}},
        {"path": "b", "properties": {"valohai.dataset-versions": "dataset://d/v1"}},
        {"path": "c", "properties": {"valohai.dataset-versions": [{"url": "dataset://d/v1"}]}},
    ]
    requests, warnings = version_requests(outputs)
    assert {uri: [o["path"] for o in files] for uri, files in requests.items()} == {
        "dataset://d/v1": ["a", "b"]
    }
    assert len(warnings) == 1 and warnings[0].startswith("c: valohai.dataset-versions entry")
