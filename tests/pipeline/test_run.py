"""Pipelines on a real local Ray with real processes: files, tasks, on-error, actions, reuse."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from sweeper.store import Store
from tests.pipeline.support import (
    PIPELINES,
    PROBE_PY,
    node_records,
    pipeline_main,
    record,
    run_json,
)

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("local_ray")]


@pytest.fixture
def probe(make_project) -> Path:
    return make_project(PIPELINES, {"probe.py": PROBE_PY})


def blob_sha(project: Path, sha: str) -> str:
    """The sha256 of the bytes the store holds under ``sha`` (so a checksum is not just copied)."""
    store = Store.open(str(project / ".sweeper"))
    path = store.blob_local_path(sha)
    assert path is not None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_example_pipeline_files_flow(example_project: Path, capsys) -> None:
    code, summary = run_json(example_project, capsys, "train-pipeline")
    assert code == 0, summary
    assert summary["status"] == "complete"
    run_id = summary["pipeline_run_id"]
    nodes = summary["nodes"]
    assert set(nodes) == {"preprocess", "train", "evaluate"}
    pre, train, evaluate = (
        record(example_project, nodes[n]["execution_id"])
        for n in ("preprocess", "train", "evaluate")
    )
    for name, rec in (("preprocess", pre), ("train", train), ("evaluate", evaluate)):
        assert rec["status"] == "complete"
        assert (rec["pipeline_run_id"], rec["node"]) == (run_id, name)
    (npz,) = [o for o in pre["outputs"] if o["path"] == "preprocessed.npz"]
    (model,) = [o for o in train["outputs"] if o["path"] == "model.npz"]
    inputs = {i["name"]: i for i in evaluate["inputs"]}
    assert (
        inputs["model"]["sha256"] == model["sha256"] == blob_sha(example_project, model["sha256"])
    )
    assert inputs["model"]["producer_execution_id"] == train["id"]
    assert (
        inputs["test_data"]["sha256"] == npz["sha256"] == blob_sha(example_project, npz["sha256"])
    )
    assert inputs["test_data"]["producer_execution_id"] == pre["id"]
    (dataset,) = train["inputs"]
    assert (dataset["sha256"], dataset["producer_execution_id"]) == (npz["sha256"], pre["id"])
    assert evaluate["metrics"]["test_rows"] == pre["metrics"]["test_rows"]

    # The durable record and the dataset row, and show/ls agree with run.
    saved = json.loads(
        (example_project / ".sweeper" / "pipelines" / run_id / "run.json").read_text()
    )
    assert saved["status"] == "complete" and saved["pipeline"] == "train-pipeline"
    store = Store.open(str(example_project / ".sweeper"))
    rows = [
        r for r in store.read_dataset("pipeline_runs").to_pylist() if r["pipeline_run_id"] == run_id
    ]
    latest = max(rows, key=lambda r: r["updated_at"])
    assert latest["status"] == "complete"
    assert json.loads(latest["nodes"])["evaluate"]["execution_id"] == evaluate["id"]
    code, out, _ = pipeline_main(
        ["show", run_id, "--json", "-f", str(example_project / "valohai.yaml")], capsys
    )
    assert code == 0 and json.loads(out)["nodes"] == nodes
    code, out, _ = pipeline_main(
        ["ls", "--json", "-f", str(example_project / "valohai.yaml")], capsys
    )
    assert [r["pipeline_run_id"] for r in json.loads(out)] == [run_id]


def test_task_node_feeds_its_best_model(probe: Path, capsys) -> None:
    code, summary = run_json(probe, capsys, "task-pipeline")
    assert code == 0, summary
    tune = summary["nodes"]["tune"]
    assert len(tune["execution_ids"]) == 3
    children = {
        record(probe, i)["parameters"]["x"]: record(probe, i) for i in tune["execution_ids"]
    }
    assert sorted(children) == [0.2, 0.5, 0.9]
    best = children[0.9]
    assert tune["best_execution_id"] == tune["execution_id"] == best["id"]
    assert {c["trial_number"] for c in children.values()} == {0, 1, 2}
    consume = record(probe, summary["nodes"]["consume"]["execution_id"])
    (model,) = consume["inputs"]
    assert model["producer_execution_id"] == best["id"]
    assert model["path"] == "model/model-0.9.txt"
    assert consume["parameters"]["threshold"] == 0.9  # metadata -> parameter
    assert consume["metrics"]["best_x"] == "0.9"  # parameter -> environment variable
    gather = record(probe, summary["nodes"]["gather"]["execution_id"])  # edge-merge-mode: append
    assert sorted(i["producer_execution_id"] for i in gather["inputs"]) == sorted(
        tune["execution_ids"]
    )
    assert gather["metrics"]["n_inputs"] == 3


def test_on_error_stop_all(probe: Path, capsys) -> None:
    code, summary = run_json(probe, capsys, "stop-all")
    assert code == 1
    assert summary["status"] == "error"
    statuses = {n: v["status"] for n, v in summary["nodes"].items()}
    assert statuses == {"fail": "error", "slow": "stopped", "after": "skipped"}
    assert record(probe, summary["nodes"]["slow"]["execution_id"])["status"] == "stopped"
    assert summary["nodes"]["after"]["execution_id"] is None  # skipped: it never ran
    # the node's error is its execution's: the probe's exit code 3
    failed = record(probe, summary["nodes"]["fail"]["execution_id"])
    assert (failed["status"], failed["exit_code"]) == ("error", 3)
    assert summary["nodes"]["fail"]["error"] == failed["error"] == "exit code 3"


def test_on_error_stop_next(probe: Path, capsys) -> None:
    code, summary = run_json(probe, capsys, "stop-next")
    assert code == 1 and summary["status"] == "error"
    statuses = {n: v["status"] for n, v in summary["nodes"].items()}
    assert statuses == {"fail": "error", "side": "complete", "after": "skipped"}


def test_on_error_continue(probe: Path, capsys) -> None:
    code, summary = run_json(probe, capsys, "continue")
    assert code == 0 and summary["status"] == "complete"
    statuses = {n: v["status"] for n, v in summary["nodes"].items()}
    assert statuses == {"fail": "error", "after": "complete"}


def test_on_error_retry(probe: Path, tmp_path: Path, capsys) -> None:
    marker = tmp_path / "flaky-marker"
    code, summary = run_json(probe, capsys, "retry", "-p", f"flaky.marker={marker}")
    assert code == 0 and summary["status"] == "complete", summary
    runs = node_records(probe, summary["pipeline_run_id"], "flaky")
    assert [(r["status"], r["attempt"]) for r in runs] == [("error", 1), ("complete", 2)]
    assert summary["nodes"]["flaky"]["execution_id"] == runs[1]["id"]
    # A node that keeps failing is retried --max-retries times, then stops the pipeline.
    code, summary = run_json(probe, capsys, "retry", "-p", "flaky.fail=5", "--max-retries", "2")
    assert code == 1 and summary["status"] == "error"
    runs = node_records(probe, summary["pipeline_run_id"], "flaky")
    assert [(r["status"], r["attempt"]) for r in runs] == [("error", 1), ("error", 2), ("error", 3)]
    assert summary["nodes"]["after"]["status"] == "skipped"


def test_metadata_condition_stops_the_pipeline(probe: Path, capsys) -> None:
    code, summary = run_json(probe, capsys, "gate", "-p", "level=0.2")
    assert code == 1 and summary["status"] == "stopped"
    assert {n: v["status"] for n, v in summary["nodes"].items()} == {
        "measure": "complete",
        "next": "skipped",
    }
    assert "metadata.score < 0.5" in summary["error"]
    code, summary = run_json(probe, capsys, "gate")  # level defaults to 0.8: the condition is false
    assert code == 0 and summary["status"] == "complete"
    assert record(probe, summary["nodes"]["measure"]["execution_id"])["parameters"]["x"] == 0.8
    # node-starting, parameter.x > 5: error-pipeline before anything runs
    code, summary = run_json(probe, capsys, "gate", "-p", "measure.x=7")
    assert code == 1 and summary["status"] == "error"
    assert summary["nodes"]["measure"] == {
        **summary["nodes"]["measure"],
        "status": "stopped",
        "execution_id": None,
    }
    assert node_records(probe, summary["pipeline_run_id"], "measure") == []


def test_metadata_edge_without_the_key_is_one_clear_error(probe: Path, capsys) -> None:
    code, out, err = pipeline_main(
        ["run", "bad-metadata", "--runtime", "local", "-f", str(probe / "valohai.yaml")], capsys
    )
    assert code == 2
    assert "Traceback" not in err
    (line,) = [e for e in err.splitlines() if e.startswith("sweep: error:")]
    assert 'node "b": edge [a.metadata.nope, b.parameter.threshold]' in line
    assert 'never printed the metadata key "nope"' in line
    store = Store.open(str(probe / ".sweeper"))
    (run,) = [r for r in store.read_dataset("pipeline_runs").to_pylist()][-1:]
    saved = json.loads(
        (probe / ".sweeper" / "pipelines" / run["pipeline_run_id"] / "run.json").read_text()
    )
    assert saved["status"] == "error" and saved["nodes"]["b"]["status"] == "error"


def test_independent_nodes_run_concurrently(probe: Path, capsys) -> None:
    code, summary = run_json(probe, capsys, "parallel")
    assert code == 0
    left, right = (record(probe, summary["nodes"][n]["execution_id"]) for n in ("left", "right"))
    assert left["started_at"] < right["ended_at"] and right["started_at"] < left["ended_at"]
    assert left["ray_node"] and left["host"]


def test_reuse_skips_unchanged_nodes(example_project: Path, capsys) -> None:
    code, first = run_json(example_project, capsys, "train-pipeline", "--reuse")
    assert code == 0 and all(n["reused_from"] is None for n in first["nodes"].values())
    code, second = run_json(example_project, capsys, "train-pipeline", "--reuse")
    assert code == 0
    for name, node in second["nodes"].items():
        assert node["reused_from"] == first["nodes"][name]["execution_id"], name
    code, third = run_json(
        example_project, capsys, "train-pipeline", "--reuse", "-p", "train.epochs=6"
    )
    assert code == 0
    reused = {n: v["reused_from"] for n, v in third["nodes"].items()}
    # The latest complete execution with that spec: the first run's, or the second's reuse of it.
    assert reused["preprocess"] in (
        first["nodes"]["preprocess"]["execution_id"],
        second["nodes"]["preprocess"]["execution_id"],
    )
    assert reused["train"] is None and reused["evaluate"] is None
    assert (
        record(example_project, third["nodes"]["train"]["execution_id"])["parameters"]["epochs"]
        == 6
    )


def test_reuse_executions_in_the_yaml(probe: Path, capsys) -> None:
    _, first = run_json(probe, capsys, "cached")
    _, second = run_json(probe, capsys, "cached")
    assert second["nodes"]["only"]["reused_from"] == first["nodes"]["only"]["execution_id"]
    _, third = run_json(probe, capsys, "cached", "-p", "only.x=0.25")
    assert third["nodes"]["only"]["reused_from"] is None
