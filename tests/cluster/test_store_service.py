"""The driver-side store service, the node-side RemoteStore, and the probe that picks one.

Real Ray, real Parquet, real processes. A node that shares no disk with the driver is the
business of the no-shared-disk suite; here an actor is told to use the service exactly as
such a node decides to (it cannot read the driver's probe file), and the store it reaches
must then hold everything, with nothing written under the store's path by the actor.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster

from sweeper.cli.project import project_from
from sweeper.cluster.actors import ActorPool, ResourceShape
from sweeper.cluster.connect import ClusterInfo
from sweeper.cluster.store_service import (
    RemoteStore,
    StoreAccess,
    StoreNotSharedWarning,
    link_store,
    probe_nodes,
    start_service,
)
from sweeper.config import parse_config
from sweeper.errors import StoreError
from sweeper.execution.inputs import InputStager, fetch_inputs
from sweeper.execution.runner import ExecutionContext, Executor
from sweeper.execution.spec import build_spec
from sweeper.record import ExecutionRecord
from sweeper.runtime import get_runtime
from sweeper.status import Status
from sweeper.store import Store
from tests.sweep.test_sweep import make_runner

pytestmark = pytest.mark.ray

MIB = 1 << 20

STEP = """
- step:
    name: digest
    image: sweeper-test/python:latest
    command: python3 ./digest.py {parameters}
    parameters:
      - name: mib
        type: integer
        default: 6
    inputs:
      - name: data
        default: data/table.csv
"""

# Reads its input from where Valohai puts it, writes a multi-MiB output derived from it.
DIGEST_PY = """
import argparse, hashlib, json, os
p = argparse.ArgumentParser(); p.add_argument("--mib", type=int); a = p.parse_args()
data = open(os.path.join(os.environ["VH_INPUTS_DIR"], "data", "table.csv"), "rb").read()
block = hashlib.sha256(data).digest() * 32768
with open(os.path.join(os.environ["VH_OUTPUTS_DIR"], "big.bin"), "wb") as out:
    for _ in range(a.mib):
        out.write(block)
print(json.dumps({"loss": len(data) / 1000.0, "input_sha": hashlib.sha256(data).hexdigest()}))
"""


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def project(make_project) -> Path:
    rows = "".join(f"{i},{i * i}\n" for i in range(20000))
    return make_project(STEP, {"digest.py": DIGEST_PY, "data/table.csv": "x,y\n" + rows})


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[Cluster]:
    """A head that runs nothing but the driver's service, and two 1-CPU worker nodes."""
    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    cluster.add_node(num_cpus=1)
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def _joined(cluster: Cluster) -> ClusterInfo:
    return ClusterInfo(address=str(cluster.address), embedded=False)


def _as_dict(record: Any) -> dict[str, Any]:
    return record if isinstance(record, dict) else record.to_dict()


def test_remote_store_round_trips_records_logs_and_large_blobs(
    two_nodes: Cluster, tmp_path: Path
) -> None:
    store = Store.open(tmp_path / "store", create=True)
    remote = RemoteStore(start_service(str(store.local_path)), str(store.local_path))

    # counters come from the driver's store, strictly increasing whoever asks
    assert [remote.allocate_counter(), store.allocate_counter(), remote.allocate_counter()] == [
        1,
        2,
        3,
    ]

    # records: a started one, then the final one with its metric rows
    started = ExecutionRecord(id="e1", step="s", status=Status.STARTED, counter=1)
    remote.put_record(started)
    assert store.get_record("e1") == started
    final = started.finished(
        Status.COMPLETE, error=None, ended_at="2026-01-01T00:00:00+00:00", metrics={"loss": 0.5}
    )
    events = [{"time": "2026-01-01T00:00:00+00:00", "values": {"loss": 0.5}}]
    remote.put_record(final, events)
    assert remote.get_record("e1") == final
    assert store.read_dataset("executions").column("execution_id").to_pylist() == ["e1"]
    assert store.read_dataset("metrics").num_rows == 1
    assert remote.find_execution("#1")["id"] == "e1"

    # complete_rows: rows a killed writer left out, never twice
    lost = ExecutionRecord(id="e2", step="s", status=Status.COMPLETE, counter=2)
    store.put_record(ExecutionRecord(id="e2", step="s", status=Status.STARTED, counter=2))
    remote.complete_rows(lost, events)
    remote.complete_rows(lost, events)
    ids = store.read_dataset("executions").column("execution_id").to_pylist()
    assert sorted(ids) == ["e1", "e2"]
    assert store.get_record("e2").status == Status.STARTED  # execution.json left as it was

    # a log written on the node arrives whole; the node keeps no log in the store's folder
    assert remote.log_file("e1") is None
    log = tmp_path / "node" / "log.txt"
    log.parent.mkdir()
    log.write_text("".join(f"line {i}\n" for i in range(300000)))  # several chunks
    remote.put_log("e1", log)
    assert store.read_log("e1") == log.read_text()

    # a multi-MiB blob from the node to the driver, then another back, checksums intact
    up = tmp_path / "node" / "up.bin"
    up.write_bytes(os.urandom(9 * MIB + 123))
    sha, size = remote.put_file(up)
    assert (sha, size) == (_sha(up), up.stat().st_size)
    assert _sha(store.blob_local_path(sha)) == sha
    assert remote.put_file(up) == (sha, size)  # already there: not sent again

    down_src = tmp_path / "driver.bin"
    down_src.write_bytes(os.urandom(13 * MIB + 7))
    down_sha, _ = store.put_file(down_src)
    assert remote.has_blob(down_sha) and remote.blob_local_path(down_sha) is None
    dest = tmp_path / "node" / "down.bin"
    remote.fetch_blob(down_sha, dest)
    assert dest.read_bytes() == down_src.read_bytes()
    with pytest.raises(StoreError, match="unknown blob"):
        remote.fetch_blob("0" * 64, tmp_path / "node" / "missing.bin")
    assert not (tmp_path / "node" / "missing.bin").exists()

    # sweep and pipeline state, datasets
    remote.put_sweep("s1", {"sweep_id": "s1", "created_at": "2026", "status": "running"})
    assert store.get_sweep("s1")["status"] == "running"
    assert remote.latest_sweep(unfinished=True) == "s1"
    remote.put_pipeline_run("p1", {"status": "running"})
    assert store.get_pipeline_run("p1") == {"status": "running"}
    with pytest.raises(
        StoreError, match="sweep journal .* is on the driver's machine, not on this node"
    ):
        remote.sweep_journal("s1")

    # the node's scratch folder is its own, never under the store's path
    assert not remote.scratch_dir().is_relative_to(store.local_path)


def test_an_actor_that_cannot_see_the_store_records_everything_through_the_driver(
    two_nodes: Cluster, project: Path
) -> None:
    proj = project_from(str(project / "valohai.yaml"), None)
    store = proj.open_store(create=True)
    version, archive = proj.snapshot_code(store)
    step = proj.config.get_step("digest")
    spec = build_spec(
        step,
        parameters={},
        inputs={"data": ["data/table.csv"]},
        code_version=version,
        code_archive=archive,
        project_dir=str(proj.directory),
        runtime="local",
    )
    staged = InputStager(store).stage(spec.inputs, spec.step_inputs, proj.directory)
    assert [f.uri for f in staged["data/table.csv"]] == ["data/table.csv"]
    # What a node without the driver's disk does: the probe is not there, so the service.
    service = start_service(str(store.local_path))
    access = StoreAccess(
        str(store.local_path), service=service, probe=str(project / "nowhere"), token="x"
    )
    pool = ActorPool(access, "local", fresh_actors=True)
    try:
        handle = pool.submit(
            "k",
            # the node has no project folder either: the input must come from the store
            replace(spec, staged_inputs=staged, project_dir=str(project / "not-on-this-node")),
            "cluster-run",
            ExecutionContext(),
            reuse=False,
            shape=ResourceShape(cpus=1, gpus=0),
        )
        record = _as_dict(ray.get(handle.ref, timeout=240))
    finally:
        pool.shutdown()
        ray.kill(service)
    assert record["status"] == Status.COMPLETE, record.get("error")
    # the actor worked in its node's own folder: no cache or work folder under the store's path
    assert not (store.local_path / "tmp" / "code").exists()
    assert not (store.local_path / "tmp" / "input-cache").exists()
    node_scratch = RemoteStore(service, str(store.local_path)).scratch_dir()
    assert (node_scratch / "code" / archive).is_dir()

    # A laptop: the same spec run in-process, straight on the store.
    laptop = Executor(store, get_runtime("local")).run(spec)
    assert laptop.status == Status.COMPLETE, laptop.error

    # the driver's store holds the record, its row, its metrics, its log and its output
    stored = store.get_record("cluster-run")
    assert stored is not None and stored.status == Status.COMPLETE
    assert "cluster-run" in store.read_dataset("executions").column("execution_id").to_pylist()
    assert "input_sha" in (store.read_log("cluster-run") or "")
    (out,) = stored.outputs
    assert out["size"] == 6 * MIB and _sha(store.blob_local_path(out["sha256"])) == out["sha256"]
    # the input has the same name, path and sha256 as on the laptop
    assert [dict(i) for i in stored.inputs] == [dict(i) for i in laptop.inputs]
    assert stored.inputs[0]["sha256"] == _sha(project / "data" / "table.csv")
    assert stored.metrics["input_sha"] == stored.inputs[0]["sha256"]
    assert stored.spec_hash == laptop.spec_hash
    assert stored.spec["inputs"] == {"data": ["data/table.csv"]}


def test_the_probe_tells_a_shared_store_from_one_that_is_not(
    two_nodes: Cluster, tmp_path: Path
) -> None:
    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    assert len(nodes) == 3
    token_file = tmp_path / "probe"
    token_file.write_text("the-token")
    # one disk for all: every node reads the driver's token
    assert probe_nodes(token_file, "the-token", nodes) == []
    # a folder of the same name but another content (a node's own .sweeper/), or none at all
    assert sorted(probe_nodes(token_file, "another-token", nodes)) == sorted(nodes)
    assert sorted(probe_nodes(tmp_path / "absent", "the-token", nodes)) == sorted(nodes)


def test_a_sweep_on_a_shared_disk_cluster_goes_direct_and_stages_inputs(
    two_nodes: Cluster, project: Path
) -> None:
    store = Store.open(project / ".sweeper", create=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StoreNotSharedWarning)
        link = link_store(store, _joined(two_nodes))
    try:
        assert link.unshared == []
        assert link.access.open().local_path == store.local_path  # direct on this disk
    finally:
        link.close()
    assert not list((store.local_path / "tmp").glob("probe-*"))  # the probe is cleaned up

    runner = make_runner(
        project,
        step="digest",
        trials=2,
        parallel=2,
        metrics=["loss"],
        runtime="local",
        specs={"mib": ["1..2"]},
        address=str(two_nodes.address),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", StoreNotSharedWarning)
        summary = runner.run()
    assert summary["trials"]["complete"] == 2
    rows = store.read_dataset("executions").to_pylist()
    sha = _sha(project / "data" / "table.csv")
    for row in rows:
        record = store.get_record(row["execution_id"])
        assert record is not None
        assert [(i["uri"], i["path"], i["sha256"]) for i in record.inputs] == [
            ("data/table.csv", "data/table.csv", sha)
        ]
    # direct: the actors kept their code cache in the store's own scratch folder
    assert (store.local_path / "tmp" / "code").is_dir()
    # the input was put into the store once, for nodes that might not see the project
    assert store.has_blob(sha)


def test_an_object_store_or_an_embedded_ray_needs_no_service(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store", create=True)
    link = link_store(store, ClusterInfo(address="local", embedded=True))
    assert link.access == StoreAccess(str(store.location)) and link.stager is None
    link.close()


WILDCARD_STEP = """
- step:
    name: read
    image: python:3.12
    command: ls
    inputs:
      - name: tree
        default: data/**/*.csv
        keep-directories: suffix
      - name: one
        default: data/a/x.csv
        filename: renamed.csv
      - name: elsewhere
        optional: true
"""


def test_staged_inputs_land_where_they_would_on_the_driver(tmp_path: Path) -> None:
    project = tmp_path / "project"
    for rel, text in {"data/a/x.csv": "1\n", "data/b/c/y.csv": "22\n", "data/z.csv": "3\n"}.items():
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text(text)
    outside = tmp_path / "outside.csv"
    outside.write_text("4444\n")
    step_inputs = tuple(parse_config(WILDCARD_STEP).get_step("read").inputs)
    uris = {"elsewhere": [outside.as_uri()]}
    store = Store.open(tmp_path / "store", create=True)

    def fetch(project_dir: Path, where: str, staged: Any = None) -> list[Any]:
        return fetch_inputs(
            uris,
            step_inputs,
            inputs_dir=tmp_path / where / "inputs",
            project_dir=project_dir,
            cache_dir=tmp_path / where / "cache",
            store=store,
            staged=staged,
        )

    on_driver = fetch(project, "driver")
    staged = InputStager(store).stage(uris, step_inputs, project)
    outside.rename(tmp_path / "gone.csv")  # the node sees neither the project nor this file
    on_node = fetch(tmp_path / "no-project-here", "node", staged)
    assert on_node == on_driver
    assert sorted(f.path for f in on_node) == [
        "elsewhere/outside.csv",
        "one/renamed.csv",
        "tree/a/x.csv",
        "tree/b/c/y.csv",
        "tree/z.csv",
    ]
    for item in on_node:
        assert (tmp_path / "node" / "inputs" / item.path).read_bytes() == (
            tmp_path / "driver" / "inputs" / item.path
        ).read_bytes()
        assert store.has_blob(item.sha256)
