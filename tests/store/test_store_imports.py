"""An execution actor boots without pyarrow; its execution's rows still reach the store.

Each of a wide sweep's actors (16 on two cores) would pay ~0.3 s of CPU importing pyarrow
before its first step. Here a fresh Python does what an actor does (import the actor module,
open the store, make its executor) and reports what it had imported then, before the first
row is built; then it runs an execution and its rows are read back. No timing: the `wide` benchmark measures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sweeper.store import Store

pytestmark = pytest.mark.timeout(600)

CHILD = """
import json, sys
from pathlib import Path
from sweeper.cluster.actors import ExecutionActor  # what every actor process imports
from sweeper.cluster.store_service import StoreAccess
from sweeper.execution.runner import Executor, ExecutionContext
from sweeper.execution.spec import build_spec
from sweeper.project import project_from
from sweeper.runtime import get_runtime

root = Path(sys.argv[1])
proj = project_from(str(root / "valohai.yaml"), None)
step = proj.config.get_step("hello")
version, archive = proj.snapshot_code(proj.open_store())
spec = build_spec(step, parameters={}, inputs={}, code_version=version, code_archive=archive,
                  project_dir=str(root), runtime="local")
store = StoreAccess(str(root / ".sweeper")).open()  # as ExecutionActor.__init__ does
store.buffer_rows(60.0)
executor = Executor(store, get_runtime("local"))
before = sorted({m.split(".")[0] for m in sys.modules})
record = executor.run(spec, execution_id="e1", context=ExecutionContext(), reuse=False)
store.flush_rows()
print(json.dumps({"status": record.status, "before_rows": before}))
"""


def test_an_actor_boots_without_pyarrow_and_its_rows_reach_the_store(tmp_path: Path) -> None:
    (tmp_path / "valohai.yaml").write_text(
        "- step:\n    name: hello\n    image: python:3.11\n    command: echo hello\n"
    )
    store = Store.open(tmp_path / ".sweeper", create=True)
    store.allocate_counter()  # an existing store's counter (a fresh one recovers it once)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["status"] == "complete"
    assert not {"pyarrow", "pandas", "numpy"} & set(report["before_rows"])
    # the rows were written by the flush: the execution is in the store's datasets
    assert store.read_dataset("executions").column("execution_id").to_pylist() == ["e1"]
    assert store.get_record("e1") is not None
