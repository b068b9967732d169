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
from sweeper.pipeline.state import PipelineState
from sweeper.record import ExecutionRecord
from sweeper.status import Status
from sweeper.store import Store
from tests.conftest import EXAMPLE, REPO, sweep_cli

README = REPO / "README.md"

# the API keeps the Ray it starts until the process ends: this process is pytest's
# a pipeline run gets up to 600 s (test_pipeline_run_json_is_the_pipeline_result)
pytestmark = [pytest.mark.usefixtures("no_ray_left"), pytest.mark.timeout(900)]


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
        "resources",
        "forecast",  # at the end: nothing left ("finished"); "budget" only with a budget
    }
    assert summary["forecast"]["remaining"] == 0 and summary["forecast"]["running"] == 0
    assert json.loads(json.dumps(summary)) == summary
    assert lines[3].startswith(f"complete 3 {result.best.value} ")

    pipeline_run = namespace["pipeline_run"]
    assert isinstance(pipeline_run, sweeper.PipelineResult)
    assert pipeline_run.status == Status.COMPLETE and pipeline_run.error is None
    assert list(pipeline_run.nodes) == ["preprocess", "train", "evaluate"]
    records = {}
    for name, node in pipeline_run.nodes.items():
        assert node.status == Status.COMPLETE and node.execution_ids == (node.execution_id,)
        stored = store.get_record(str(node.execution_id))
        assert stored is not None and stored.status == Status.COMPLETE
        assert stored.pipeline_run_id == pipeline_run.pipeline_run_id and stored.node == name
        records[name] = stored
    assert records["train"].parameters["epochs"] == 3
    # the edge train.output.model* -> evaluate.input.model carried train's own output
    model = next(i for i in records["evaluate"].inputs if i["name"] == "model")
    assert model["uri"].startswith(f"execution://{records['train'].id}/outputs/model")
    # the result is what `sweep pipeline show` reads back from the store
    assert pipeline_run == PipelineState.load(store, pipeline_run.pipeline_run_id).result()
    assert lines[4] == "complete"
    assert lines[5:] == [
        f"{name} complete {node.execution_id}" for name, node in pipeline_run.nodes.items()
    ]


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
    with pytest.raises(SweeperError, match='unknown pipeline "nope"'):
        sweeper.run_pipeline("nope", runtime="local", config=config)
    with pytest.raises(SweeperError, match="no pipeline run in the store"):
        sweeper.resume_pipeline(config=config)
    with pytest.raises(SweeperError, match='unknown pipeline run "nope"'):
        sweeper.resume_pipeline("nope", config=config)


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


def test_run_with_an_address_runs_on_an_actor_of_that_cluster(
    in_project_root: Path, ray_head: str
) -> None:
    proc = sweep_cli(
        "run",
        "train-model",
        "--runtime",
        "local",
        "-p",
        "epochs=2",
        "--address",
        ray_head,
        "--json",
        "-f",
        "configs/valohai.yaml",
        cwd=in_project_root,
    )
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert printed["status"] == "complete" and printed["parameters"]["epochs"] == 2
    assert printed["ray_node"]  # an actor of the cluster ran it, not this process
    assert '"epoch": 1' in proc.stderr  # its log was echoed, as for a run here
    store = Store.open(str(in_project_root / "configs" / ".sweeper"))
    stored = store.get_record(printed["id"])
    assert stored is not None and stored.status == Status.COMPLETE
    assert stored.ray_node == printed["ray_node"]


SLEEPER = """
- step:
    name: sleep
    image: sweeper-test/python:latest
    command: python -c "import time; print('started', flush=True); time.sleep(120)"
"""


def test_a_stopped_run_on_a_cluster_ends_stopped(make_project, ray_head: str) -> None:
    from sweeper.execution.runner import StopToken

    project = make_project(SLEEPER)
    stop = StopToken()
    stop.stop()  # before the actor even starts: the controller passes it on until it lands
    record = sweeper.run(
        "sleep", runtime="local", config=project / "valohai.yaml", address=ray_head, stop=stop
    )
    assert record.status == Status.STOPPED and record.ray_node


def test_pipeline_run_json_is_the_pipeline_result(in_project_root: Path) -> None:
    """``sweep pipeline run --json`` prints ``PipelineResult.to_dict()``; resume gives it back."""
    proc = sweep_cli(
        "pipeline",
        "run",
        "train-pipeline",
        "--runtime",
        "local",
        "-p",
        "train.epochs=2",
        "--json",
        "-f",
        "configs/valohai.yaml",
        cwd=in_project_root,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    store = Store.open(in_project_root / "configs" / ".sweeper")
    saved = PipelineState.load(store, printed["pipeline_run_id"]).result()
    assert isinstance(saved, sweeper.PipelineResult) and saved.to_dict() == printed
    # a complete run resumes to the same result at once (nothing runs again)
    resumed = sweeper.resume_pipeline(config="configs/valohai.yaml")
    assert resumed.to_dict() == printed and resumed.status == Status.COMPLETE
    assert [node.status for node in resumed.nodes.values()] == [Status.COMPLETE] * 3
