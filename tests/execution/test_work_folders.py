"""An execution's work folder is gone once it has ended: at once, or by the executor's thread.

A sweep's actor runs thousands of executions back to back; each leaves a work folder under
the scratch folder (``tmp/work/<id>``) that must not pile up, whether the executor removes
it before :meth:`Executor.run` returns or, for an actor, on a thread of its own.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest
import ray

from sweeper.cluster.actors import ActorPool, ResourceShape
from sweeper.cluster.store_service import StoreAccess
from sweeper.config import parse_config
from sweeper.execution.code import archive_project, project_files
from sweeper.execution.runner import ExecutionContext, Executor
from sweeper.execution.spec import ExecutionSpec, build_spec
from sweeper.runtime import LocalRuntime
from sweeper.status import Status
from sweeper.store import Store
from tests.execution.test_record import fit_spec


def _work_folders(store: Store) -> list[str]:
    work = store.scratch_dir() / "work"
    return sorted(p.name for p in work.iterdir()) if work.exists() else []


#: A step that says whether its work folder was clean, then leaves things in it.
LOOK = """
import json, os
seen = {
    "repository": sorted(os.listdir(".")),
    "inputs": os.listdir(os.environ["VH_INPUTS_DIR"]),
    "outputs": os.listdir(os.environ["VH_OUTPUTS_DIR"]),
}
open("left-behind.txt", "w").write("x")
open(os.path.join(os.environ["VH_OUTPUTS_DIR"], "model.txt"), "w").write("m")
clean = seen == {"repository": ["look.py", "valohai.yaml"], "inputs": [], "outputs": []}
print(json.dumps({"clean": int(clean)}))
"""


def _look_spec(project: Path, store: Store) -> ExecutionSpec:
    command = f"{shlex.quote(sys.executable)} look.py"
    (project / "valohai.yaml").write_text(
        f"- step:\n    name: look\n    image: python:3.11\n    command: {json.dumps(command)}\n"
    )
    (project / "look.py").write_text(LOOK)
    archive = store.put_bytes(archive_project(project, project_files(project)))
    return build_spec(
        parse_config((project / "valohai.yaml").read_text()).steps["look"],
        parameters={},
        inputs={},
        code_version="v1",
        code_archive=archive,
        project_dir=str(project),
    )


def test_run_returns_with_its_work_folder_removed(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store", create=True)
    record = Executor(store, LocalRuntime()).run(fit_spec(tmp_path))
    assert record.status is Status.COMPLETE, record.error
    assert _work_folders(store) == []


def test_work_folders_removed_in_the_background_are_gone_after_wait(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store", create=True)
    executor = Executor(store, LocalRuntime(), remove_in_background=True)
    records = [executor.run(fit_spec(tmp_path)) for _ in range(3)]
    executor.wait_removed()
    assert [r.status for r in records] == [Status.COMPLETE] * 3
    assert _work_folders(store) == []
    # every execution ran in a folder of its own, which held its outputs until it ended
    assert all(r.outputs and r.outputs[0]["name"] == "model.txt" for r in records)
    assert len({r.outputs[0]["producer_execution_id"] for r in records}) == 3


def test_work_folders_made_ahead_are_as_clean_as_new_ones(tmp_path: Path) -> None:
    # An executor in the background makes the next work folder ahead, from the same code:
    # what an execution left in its folder never reaches the next one.
    store = Store.open(tmp_path / "store", create=True)
    (tmp_path / "project").mkdir()
    spec = _look_spec(tmp_path / "project", store)
    executor = Executor(store, LocalRuntime(), remove_in_background=True)
    records = [executor.run(spec) for _ in range(4)]
    executor.wait_removed()
    assert [r.status for r in records] == [Status.COMPLETE] * 4, [r.error for r in records]
    assert [r.metrics["clean"] for r in records] == [1] * 4
    assert _work_folders(store) == []


@pytest.mark.ray
def test_an_actor_pool_leaves_no_work_folder_behind(tmp_path: Path, local_ray: None) -> None:
    store = Store.open(tmp_path / "store", create=True)
    # an actor that holds rows removes its work folders on a thread of its own
    pool = ActorPool(StoreAccess(str(store.location)), "local", batch_rows_s=3600)
    try:
        records = []
        for number in range(3):
            handle = pool.submit(
                number,
                fit_spec(tmp_path),
                f"e{number}",
                ExecutionContext(),
                reuse=False,
                shape=ResourceShape(cpus=1, gpus=0),
            )
            records.append(ray.get(handle.ref, timeout=240))
            pool.release(handle)
    finally:
        pool.shutdown()  # flushes the actors: rows written, work folders removed
    assert [r.status for r in records] == [Status.COMPLETE] * 3
    assert _work_folders(store) == []
    ids = store.read_dataset("executions").column("execution_id").to_pylist()
    assert sorted(ids) == ["e0", "e1", "e2"]
