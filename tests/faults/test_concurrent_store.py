"""Two sweeps and a pipeline write to one store at once while a reader lists it in a loop."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from sweeper.store import Store
from tests.faults.conftest import TINY_PY, TINY_STEP, records, sweep_popen

pytestmark = [pytest.mark.faults, pytest.mark.ray]

PIPELINE = """
- step:
    name: consume
    image: sweeper-test/python:latest
    command: python3 ./consume.py
    inputs:
      - name: model
- pipeline:
    name: chain
    nodes:
      - {name: first, type: execution, step: tiny}
      - {name: second, type: execution, step: tiny}
      - {name: use, type: execution, step: consume}
    edges:
      - [first.output.out.txt, use.input.model]
"""

CONSUME_PY = """
import glob, json, os
files = glob.glob(os.path.join(os.environ["VH_INPUTS_DIR"], "model", "*"))
print(json.dumps({"inputs": len(files)}), flush=True)
"""


def test_two_sweeps_a_pipeline_and_a_reader_share_a_store(make_project, ray_head: str) -> None:
    project: Path = make_project(
        TINY_STEP + PIPELINE, {"tiny.py": TINY_PY, "consume.py": CONSUME_PY}
    )
    config = str(project / "valohai.yaml")
    sweep_args = ["--trials", "6", "--parallel", "1", "--metric", "loss", "--runtime", "local"]
    common = ["--address", ray_head, "-f", config, "--json"]
    # create the store first, so that the writers race on its content, not on its creation
    Store.open(project / ".sweeper", create=True)
    writers = [
        sweep_popen("tiny", *sweep_args, "--seed", "1", "-p", "sleep=0.1", *common),
        sweep_popen("tiny", *sweep_args, "--seed", "2", "-p", "sleep=0.1", *common),
        sweep_popen("pipeline", "run", "chain", "--runtime", "local", *common),
    ]
    seen: list[int] = []
    problems: list[str] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            proc = sweep_popen("ls", "--format", "json", "-f", config)
            out, err = proc.communicate(timeout=60)
            if proc.returncode != 0 or err.strip():
                problems.append(f"sweep ls exited {proc.returncode}: {err}")
                continue
            listed = json.loads(out)
            ids = [r["execution_id"] for r in listed]
            if len(ids) != len(set(ids)):
                problems.append(f"duplicated rows in a listing: {sorted(ids)}")
            seen.append(len(ids))

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    outputs = [w.communicate(timeout=240) for w in writers]
    done.set()
    thread.join(timeout=60)
    for writer, (_out, err) in zip(writers, outputs, strict=True):
        assert writer.returncode == 0, err
        assert "Traceback" not in err and "error" not in err.lower(), err
    assert problems == []
    assert len(seen) >= 2 and seen == sorted(seen), seen  # rows only ever appear

    store = Store.open(project / ".sweeper")
    rows = store.read_dataset("executions").to_pylist()
    ids = [r["execution_id"] for r in rows]
    assert len(ids) == len(set(ids)) == 6 + 6 + 3
    assert sorted(r["counter"] for r in rows) == list(range(1, 16))
    assert {r["status"] for r in rows} == {"complete"}
    assert {r["execution_id"] for r in rows} == {r["id"] for r in records(project / ".sweeper")}
    by_sweep: dict[str | None, int] = {}
    for row in rows:
        by_sweep[row["sweep_id"]] = by_sweep.get(row["sweep_id"], 0) + 1
    assert sorted(by_sweep.values()) == [3, 6, 6]
    metrics = store.read_dataset("metrics").to_pylist()
    assert {m["execution_id"] for m in metrics} == set(ids)
    events = [(m["execution_id"], m["seq"], m["key"]) for m in metrics]
    assert len(events) == len(set(events))
    sweeps = {r["sweep_id"] for r in store.read_dataset("sweeps").to_pylist()}
    assert len(sweeps) == 2
    runs = store.read_dataset("pipeline_runs").to_pylist()
    assert runs and {r["status"] for r in runs if r["status"] != "running"} == {"complete"}
