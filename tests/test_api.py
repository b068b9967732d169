"""The README's "Python API" example runs exactly as written, on a real store.

The example is read from README.md itself (the ```python block of that section), so the
README cannot drift from the API: a renamed argument or attribute fails here.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import sweeper
from sweeper.errors import SweeperError
from sweeper.execution.record import ExecutionRecord
from sweeper.status import Status
from sweeper.store import Store
from tests.conftest import EXAMPLE, REPO

README = REPO / "README.md"


def readme_example(heading: str = "## Python API") -> str:
    """The first ```python block under ``heading`` in README.md."""
    text = README.read_text()
    section = text[text.index(heading) :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, f"no python block under {heading}"
    return match.group(1)


@pytest.fixture
def in_project_root(tmp_path: Path) -> Iterator[Path]:
    """A folder with a fresh copy of the example project in ``configs/``, as the working directory."""
    shutil.copytree(
        EXAMPLE, tmp_path / "configs", ignore=shutil.ignore_patterns(".sweeper", "__pycache__")
    )
    before = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(before)


def test_readme_example_runs_as_written(in_project_root: Path) -> None:
    printed = io.StringIO()
    namespace: dict[str, object] = {}
    with contextlib.redirect_stdout(printed):
        exec(compile(readme_example(), str(README), "exec"), namespace)  # noqa: S102 - the README's own code

    record = namespace["record"]
    again = namespace["again"]
    assert isinstance(record, ExecutionRecord) and isinstance(again, ExecutionRecord)
    assert record.status == Status.COMPLETE and again.status == Status.COMPLETE
    assert record.parameters["epochs"] == 3 and record.parameters["learning_rate"] == 0.3
    assert again.id != record.id and again.parameters == record.parameters
    # both are in the store the CLI uses, as `sweep show` would read them
    store = Store.open(str(in_project_root / "configs" / ".sweeper"))
    assert store.get_record(record.id) == record
    assert store.get_record(again.id) == again
    lines = printed.getvalue().splitlines()
    assert lines[0].startswith(f"{record.id} complete ")
    assert lines[1] == "['model.npz']"  # what the README's comment promises
    assert lines[2] == "complete True"

    result = namespace["result"]
    assert isinstance(result, sweeper.SweepResult)
    assert result.status == Status.COMPLETE and result.counts["complete"] == 3
    assert result.best is not None and not isinstance(result.best, tuple)
    assert "epochs" not in result.best.parameters  # the searched ones; epochs is fixed
    assert 0.01 <= result.best.parameters["learning_rate"] <= 0.5
    # the sweep is in the store as `sweep status` reads it, its trials as executions
    assert store.get_sweep(result.sweep_id)["status"] == "complete"
    assert store.latest_sweep() == result.sweep_id
    best = store.get_record(result.best.execution_id)
    assert best is not None and best.sweep_id == result.sweep_id and best.parameters["epochs"] == 3
    assert best.metrics["accuracy"] == result.best.value
    summary = result.to_dict()
    assert summary.keys() == {
        "sweep_id",
        "trials",
        "best",
        "failures",
        "failure_classes",
        "reused",
        "status",
    }
    assert json.loads(json.dumps(summary)) == summary
    assert lines[3].startswith(f"complete 3 {result.best.value} ")


def test_bad_input_raises_and_runs_nothing(in_project_root: Path) -> None:
    config = "configs/valohai.yaml"
    with pytest.raises(SweeperError, match="learning_rate"):
        sweeper.run("train-model", parameters={"learning_rate": 7}, runtime="local", config=config)
    with pytest.raises(SweeperError, match="nope"):
        sweeper.run("train-model", parameters={"nope": 1}, runtime="local", config=config)
    assert not list((in_project_root / "configs").glob(".sweeper/executions/*"))
    Store.open(str(in_project_root / "configs" / ".sweeper"), create=True)
    with pytest.raises(SweeperError, match="no unfinished sweep in the store"):
        sweeper.resume_sweep(config=config)
    with pytest.raises(SweeperError, match='unknown sweep "nope"'):
        sweeper.resume_sweep("nope", config=config)


def test_importing_sweeper_loads_no_heavy_library() -> None:
    """``import sweeper`` and ``sweeper.run`` stay light: a script pays for Ray only when it sweeps."""
    code = (
        "import sys, sweeper; sweeper.run, sweeper.rerun;"
        "print(sorted(m for m in ('ray', 'optuna', 'pandas', 'pyarrow', 'docker') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert json.loads(out.stdout.replace("'", '"')) == []
