"""Steps written with valohai-utils, run by sweeper: one execution, a sweep, a pipeline, Docker.

valohai-utils is the library Valohai's own examples use: ``valohai.prepare``, ``parameters()``,
``inputs()``, ``outputs()``, ``metadata.logger()`` and ``valohai.distributed`` read and write
what sweeper lays out (``/valohai/config``, ``inputs/``, ``outputs/``, metric lines). Locally it
is imported from the test environment; in Docker from the offline test image
(scripts/build-test-images installs it there).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sweeper.store import Store
from tests.conftest import sweep_cli

pytestmark = [pytest.mark.ray, pytest.mark.timeout(2100)]

TRAIN = """
import valohai

valohai.prepare(
    step="vh-train",
    image="sweeper-test/python:latest",
    default_parameters={"lr": 0.01},
    default_inputs={"data": "data.csv"},
)
lr = valohai.parameters("lr").value
rows = len(open(valohai.inputs("data").path()).read().splitlines())
with open(valohai.outputs().path("model.txt"), "w") as out:
    out.write(f"lr={lr} rows={rows}")
with valohai.metadata.logger() as logger:
    logger.log("rows", rows)
    logger.log("loss", round(1 / (1 + lr * rows), 6))
"""

MEMBERS = """
import json, socket, time
import valohai

d = valohai.distributed
assert d.is_distributed_task()
master = d.master()
host, port = master.primary_local_ip, int(next(iter(master.exposed_ports)))
if d.me().is_master:
    server = socket.create_server((host, port))
    conn, _ = server.accept()
else:
    for _ in range(3000):
        try:
            conn = socket.create_connection((host, port), timeout=5)
            break
        except OSError:
            time.sleep(0.1)
with conn:
    conn.sendall(f"rank {d.rank} of {d.required_count}".encode())
    got = conn.recv(1024).decode()
with valohai.metadata.logger() as logger:
    logger.log("rank", d.rank)
    logger.log("received", got)
    logger.log("model", open(valohai.inputs("model").path()).read())
"""

YAML = """
- step:
    name: vh-train
    image: sweeper-test/python:latest
    command: python train.py {parameters}
    parameters:
      - name: lr
        type: float
        default: 0.01
    inputs:
      - name: data
        default: data.csv
- step:
    name: vh-members
    image: sweeper-test/python:latest
    command: python members.py
    inputs:
      - name: model
        optional: true
- task:
    name: vh-pair
    step: vh-members
    type: distributed
    execution-count: 2
    parameters: []
- pipeline:
    name: vh-flow
    nodes:
      - name: train
        type: execution
        step: vh-train
      - name: members
        type: task
        task: vh-pair
    edges:
      - [train.output.model.txt, members.input.model]
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "vh"
    root.mkdir()
    (root / "valohai.yaml").write_text(YAML)
    (root / "train.py").write_text(TRAIN)
    (root / "members.py").write_text(MEMBERS)
    (root / "data.csv").write_text("a,b\n1,2\n3,4\n5,6\n")
    return root


def _record(project: Path, execution_id: str):
    record = Store.open(project / ".sweeper").get_record(execution_id)
    assert record is not None
    return record


def _assert_trained(project: Path, execution_id: str, lr: float) -> None:
    record = _record(project, execution_id)
    assert record.status == "complete", record.error
    assert record.metrics["rows"] == 4
    assert record.metrics["loss"] == round(1 / (1 + lr * 4), 6)
    assert [o["name"] for o in record.outputs] == ["model.txt"]


@pytest.mark.parametrize("runtime", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_a_valohai_utils_step_runs_as_one_execution(project: Path, runtime: str) -> None:
    """Its parameter, input, output and logged metrics go where sweeper reads them."""
    proc = sweep_cli(
        "run", "vh-train", "-p", "lr=0.5", "--runtime", runtime, "--json", cwd=project, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _assert_trained(project, json.loads(proc.stdout)["id"], 0.5)


def test_a_valohai_utils_step_in_a_sweep(project: Path, ray_head: str) -> None:
    """Each trial's value reaches valohai.parameters() and its logged loss is the objective."""
    proc = sweep_cli(
        "sweep", "vh-train", "-p", "lr=0.1,0.2", "--trials", "2", "--sampler", "grid",
        "--metric", "loss", "--runtime", "local",
        "--address", ray_head, "--json", cwd=project, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["trials"]["complete"] == 2
    assert summary["best"]["parameters"] == {"lr": 0.2}
    assert summary["best"]["value"] == round(1 / (1 + 0.2 * 4), 6)


@pytest.mark.parametrize("runtime", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_a_valohai_utils_pipeline_with_a_distributed_task(
    project: Path, ray_head: str, runtime: str
) -> None:
    """valohai.distributed ranks the members sweeper started together (in Docker on the
    node's network), and they talk at the master's address."""
    proc = sweep_cli(
        "pipeline", "run", "vh-flow", "--runtime", runtime, "--address", ray_head, "--json",
        cwd=project, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    nodes = json.loads(proc.stdout)["nodes"]
    _assert_trained(project, nodes["train"]["execution_id"], 0.01)
    members = [_record(project, i) for i in nodes["members"]["execution_ids"]]
    got = sorted((m.metrics["rank"], m.metrics["received"]) for m in members)
    assert got == [(0, "rank 1 of 2"), (1, "rank 0 of 2")]
    assert {m.metrics["model"] for m in members} == {"lr=0.01 rows=4"}  # the edge's file
