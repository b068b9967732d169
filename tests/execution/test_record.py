"""ExecutionRecord, Status and the spec of a record: nothing a record holds is lost."""

from __future__ import annotations

import doctest
import json
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest

import sweeper.execution.spec as spec_module
import sweeper.record as record_module
import sweeper.status as status_module
from sweeper.config import parse_config
from sweeper.errors import SweeperError
from sweeper.execution import ExecutionRecord, ExecutionSpec, Executor, Status, build_spec
from sweeper.record import FailureKind
from sweeper.runtime import DockerRuntime, LocalRuntime
from sweeper.store import Store
from tests.requirements import require_docker

#: A full record as Executor wrote it before ExecutionRecord existed (keys in that order).
FULL = {
    "id": "01JABCDEF",
    "counter": 7,
    "step": "train",
    "status": "complete",
    "exit_code": 0,
    "error": None,
    "command": ["python train.py --lr=0.1"],
    "image": "python:3.12",
    "image_digest": "python@sha256:abc",
    "code_version": "git:1234",
    "parameters": {"lr": 0.1, "layers": 3},
    "metrics": {"loss": 0.25, "acc": 0.9},
    "metrics_dropped": 0,
    "inputs": [
        {
            "name": "data",
            "uri": "file:///d.csv",
            "path": "data/d.csv",
            "sha256": "aa",
            "size": 3,
            "producer_execution_id": None,
        }
    ],
    "outputs": [
        {
            "name": "m.pkl",
            "path": "m.pkl",
            "uri": "datum://bb",
            "sha256": "bb",
            "size": 5,
            "producer_execution_id": "01JABCDEF",
        }
    ],
    "outputs_skipped": [{"path": "fifo", "reason": "a FIFO, not a regular file"}],
    "created_at": "2026-01-01T00:00:00+00:00",
    "started_at": "2026-01-01T00:00:01+00:00",
    "ended_at": "2026-01-01T00:00:02+00:00",
    "duration_s": 1.5,
    "runtime": "docker",
    "reused_from": None,
    "sweep_id": "s1",
    "trial_number": 3,
    "pipeline_run_id": None,
    "node": None,
    "ray_node": "n1",
    "gpu_ids": ["0"],
    "attempt": 1,
    "host": "h",
    "spec_hash": "cafe",
    "environment": {"TOKEN": "****"},
    "resources": {"cpus": 1},
    "spec": {"step": "train", "image": "python:3.12"},
}

#: The record sweep/state.py writes for a trial whose runner died before recording it.
CRASH = {
    "id": "01JCRASH",
    "sweep_id": "s1",
    "status": "crashed",
    "error": "the Ray actor running it died",
    "ended_at": "2026-01-01T00:00:00+00:00",
    "counter": 4,
}


def test_status_is_its_text_everywhere() -> None:
    assert Status.COMPLETE == "complete"
    assert json.dumps({"status": Status.PRUNED}) == '{"status": "pruned"}'
    assert f"{Status.ERROR}" == "error" and str(Status.CRASHED) == "crashed"
    assert Status("stopped") is Status.STOPPED


def test_status_sets() -> None:
    assert Status.final() == {"complete", "error", "stopped", "crashed", "pruned"}
    assert Status.counted() == {"complete", "error", "pruned"}
    assert Status.node_final() == {"complete", "error", "stopped", "skipped"}
    assert Status.PRUNED.is_final and not Status.STARTED.is_final
    # Plain strings read from JSON find the members (a str enum hashes as its text).
    assert "complete" in Status.final() and {Status.ERROR: 1}["error"] == 1


def test_full_record_round_trips_byte_for_byte() -> None:
    record = ExecutionRecord.from_dict(FULL)
    assert record.status is Status.COMPLETE
    assert record.command == ("python train.py --lr=0.1",)
    assert record.outputs_skipped[0]["reason"] == "a FIFO, not a regular file"
    assert record.extra == {}
    text = json.dumps(FULL, indent=2, default=str)
    assert json.dumps(record.to_dict(), indent=2, default=str) == text
    assert ExecutionRecord.from_dict(record.to_dict()) == record


def test_unknown_keys_and_odd_values_are_kept() -> None:
    data = {**FULL, "status": "paused", "outputs": None, "future_key": {"x": [1]}}
    record = ExecutionRecord.from_dict(data)
    assert record.extra == {"status": "paused", "outputs": None, "future_key": {"x": [1]}}
    assert not record.is_final  # a status this version does not know is never final
    assert list(record.to_dict().items()) == list(data.items())


def test_crash_record_reads_with_defaults() -> None:
    record = ExecutionRecord.from_dict(CRASH)
    assert (record.id, record.sweep_id, record.counter) == ("01JCRASH", "s1", 4)
    assert record.status is Status.CRASHED and record.is_final
    assert record.error == "the Ray actor running it died"
    assert record.metrics == {} and record.outputs == () and record.attempt == 1
    written = record.to_dict()
    assert {k: written[k] for k in CRASH} == CRASH
    assert ExecutionRecord.from_dict(written) == record


def test_failure_kind_round_trips_and_old_records_read_without_it() -> None:
    failed = ExecutionRecord.from_dict({**FULL, "status": "error", "exit_code": 137})
    assert failed.failure_kind is None  # written before the kind existed
    assert "failure_kind" not in failed.to_dict()  # and written back as it was read
    oom = failed.finished(Status.ERROR, error="x", ended_at="t", failure_kind=FailureKind.OOM)
    stored = json.loads(json.dumps(oom.to_dict()))
    assert stored["failure_kind"] == "oom"
    assert list(stored)[list(stored).index("error") + 1] == "failure_kind"
    again = ExecutionRecord.from_dict(stored)
    assert again.failure_kind is FailureKind.OOM and again == oom
    assert [kind.value for kind in FailureKind] == [
        "oom",
        "time_limit",
        "no_output",
        "infrastructure",
        "user_error",
    ]


def test_an_unknown_failure_kind_is_kept_in_its_place() -> None:
    data = {**CRASH, "failure_kind": "cosmic_ray", "error": "the Ray actor running it died"}
    record = ExecutionRecord.from_dict(data)
    assert record.failure_kind is None and record.extra == {"failure_kind": "cosmic_ray"}
    written = record.to_dict()
    assert written["failure_kind"] == "cosmic_ray"
    assert list(written).index("failure_kind") == list(written).index("error") + 1


def test_finished_and_objective_values() -> None:
    started = ExecutionRecord(id="e", status=Status.STARTED, metrics={"loss": 0.5, "bad": "x"})
    ended = started.finished(Status.ERROR, error="boom", ended_at="t", exit_code=2)
    assert (ended.status, ended.error, ended.ended_at, ended.exit_code) == ("error", "boom", "t", 2)
    assert started.status is Status.STARTED  # frozen: the original is unchanged
    assert ended.objective_values(["loss"]) == [0.5]
    assert ended.objective_values(["loss", "bad"]) is None
    assert (
        ExecutionRecord(id="e", metrics={"loss": float("nan")}).objective_values(["loss"]) is None
    )
    with pytest.raises(ValueError, match="an execution record needs an 'id'"):
        ExecutionRecord.from_dict({"status": "complete"})


# -- the spec of a record -----------------------------------------------------------------

STEP_YAML = """
- step:
    name: train
    image: sweeper-test/python:latest
    command: python train.py {parameters}
    parameters:
      - name: lr
        type: float
        default: 0.1
    inputs:
      - name: data
        default: data.csv
    environment-variables:
      - name: MODE
        default: fast
      - name: API_TOKEN
        default: s3cr3t-value
    mounts:
      - /data:/mnt/data:ro
"""


def _spec(runtime: str) -> ExecutionSpec:
    step = parse_config(STEP_YAML).steps["train"]
    return build_spec(
        step,
        parameters={"lr": 0.5},
        inputs={"data": ["file:///d.csv"]},
        code_version="git:abc",
        code_archive="c" * 64,
        project_dir="/p",
        runtime=runtime,
        cpus=2,
    )


def test_spec_hash_is_unchanged() -> None:
    # Hex digests of the code before the image was passed in by the caller: a spec hash that
    # changed would make --reuse miss every execution recorded before.
    def spec(runtime: str) -> ExecutionSpec:
        return ExecutionSpec(
            step="train",
            step_definition={"name": "train", "image": "python:3.12", "command": ["python t.py"]},
            image="python:3.12",
            commands=("python t.py --lr=0.1",),
            parameters={"lr": 0.1},
            inputs={"data": ("file:///d.csv",)},
            environment={"A": "1", "API_TOKEN": "s3cr3t"},
            code_version="git:abc",
            code_archive=None,
            project_dir="/p",
            runtime=runtime,
        )

    checksums = [("data", "data/d.csv", "aa" * 32)]
    digest = "python@sha256:" + "b" * 64
    assert spec("local").spec_hash(checksums, None) == (
        "4281978b08db384f1cfee958d8ff324e8f38e4ec100a49e4e4a4f38aa0e51141"
    )
    assert spec("docker").spec_hash(checksums, digest) == (
        "d7a5ee93178b29b7b3160bbf503fbe9a1c30ee92b35196255b889b2f4501738c"
    )
    assert spec("docker").spec_hash(checksums, "python:3.12") == (
        "c23ec169abeb54de954c046f7387361173682f368088514d5f8b02ff46304110"
    )


@pytest.mark.parametrize("runtime", ["local", "docker"])
def test_from_record_gives_back_the_spec(runtime: str) -> None:
    spec = _spec(runtime)
    uses_images = runtime == "docker"
    digest = "sweeper-test/python@sha256:" + "d" * 64 if uses_images else None
    record = ExecutionRecord(
        id="e1",
        step=spec.step,
        command=spec.commands,
        image=spec.image if uses_images else None,
        image_digest=digest,
        code_version=spec.code_version,
        parameters=spec.parameters,
        runtime=runtime,
        spec=spec.to_record(),
    )
    # What a stored record reads back as, not the object built here.
    stored = ExecutionRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    again = ExecutionSpec.from_record(
        stored,
        project_dir="/p",
        inputs={"data": ["datum://" + "e" * 64]},
        step_inputs=spec.step_inputs,
        pull_policy="missing",
    )
    # Secret values were never recorded; the docker run gets the very image that ran.
    expected = replace(
        spec,
        step_definition=spec.masked_step_definition(),
        environment={"MODE": "fast"},
        inputs={"data": ("datum://" + "e" * 64,)},
        image=digest if uses_images else spec.image,
    )
    assert again == expected
    assert again.mounts and isinstance(again.mounts[0], tuple)  # tuples, as build_spec gives
    assert again.step_inputs == spec.step_inputs
    assert ExecutionSpec.from_record(stored, project_dir="/p", inputs={}).pull_policy == "never"


@pytest.mark.parametrize("module", [status_module, record_module, spec_module])
def test_docstring_examples_run(module: ModuleType) -> None:
    assert doctest.testmod(module).failed == 0


# -- what Executor.run stores ------------------------------------------------------------

#: The keys of execution.json, in the order the executor wrote them before ExecutionRecord.
#: What a run writes: every key of a full record, and what the step used (``usage``, written
#: only when set: every run sets it) after its duration.
_AFTER = list(FULL).index("duration_s") + 1
STORED_KEYS = [*list(FULL)[:_AFTER], "usage", *list(FULL)[_AFTER:]]

RUN_STEP = """
- step:
    name: fit
    image: sweeper-test/python:latest
    command: {command}
    parameters:
      - name: lr
        type: float
        default: 0.1
"""

RUN_CODE = (
    "import json, os, sys; "
    "print(json.dumps({'loss': 0.5})); print(json.dumps({'loss': 0.25})); "
    "open(os.path.join(os.environ['VH_OUTPUTS_DIR'], 'model.txt'), 'w').write(sys.argv[-1])"
)


def fit_spec(tmp_path: Path, runtime: str = "local") -> ExecutionSpec:
    command = f"{shlex.quote(sys.executable)} -c {shlex.quote(RUN_CODE)} {{parameters}}"
    text = RUN_STEP.format(command=json.dumps(command))  # a JSON string is a YAML scalar
    return build_spec(
        parse_config(text).steps["fit"],
        parameters={"lr": 0.5},
        inputs={},
        code_version="none",
        code_archive=None,
        project_dir=str(tmp_path),
        runtime=runtime,
    )


def test_executor_run_stores_exactly_its_record(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store", create=True)
    seen: list[ExecutionRecord] = []
    record = Executor(store, LocalRuntime()).run(fit_spec(tmp_path), on_record=seen.append)

    assert record.status is Status.COMPLETE and record.exit_code == 0
    assert record.metrics == {"loss": 0.25}
    assert [o["name"] for o in record.outputs] == ["model.txt"]
    assert record.image is None and record.spec_hash and record.counter == 1
    assert [r.status for r in seen] == [Status.STARTED, Status.COMPLETE]
    assert seen[-1] == record

    text = (tmp_path / "store" / "executions" / record.id / "execution.json").read_text()
    stored = json.loads(text)
    assert list(stored) == STORED_KEYS  # no key lost, none added, same order
    assert stored == record.to_dict()
    assert ExecutionRecord.from_dict(stored) == record
    assert store.get_record(record.id) == record

    (row,) = store.read_dataset("executions").to_pylist()
    assert row["status"] == "complete" and type(row["status"]) is str
    assert row["metric.loss"] == 0.25
    assert "loss" in (store.read_log(record.id) or "")


def test_reuse_and_bad_input_records(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store", create=True)
    executor = Executor(store, LocalRuntime())
    first = executor.run(fit_spec(tmp_path))
    again = executor.run(fit_spec(tmp_path), reuse=True)
    assert again.reused_from == first.id and again.status is Status.COMPLETE
    assert again.outputs == first.outputs and again.metrics == first.metrics
    assert store.get_record(again.id) == again

    broken = replace(fit_spec(tmp_path), inputs={"data": ("/no/such/file.csv",)})
    failed = executor.run(broken)
    assert failed.status is Status.ERROR and failed.error and failed.counter == 3
    assert store.get_record(failed.id) == failed
    with pytest.raises(SweeperError, match="/no/such/file.csv"):
        executor.run(broken, raise_bad_input=True)


# -- why an execution failed -------------------------------------------------------------

MEMORY_HOG = "ulimit -v 400000; {python} -c 'print(1); x = bytearray(2 * 10**9)'"


def failing_spec(tmp_path: Path, case: str) -> ExecutionSpec:
    """A spec of ``fit`` that fails in the way ``case`` names."""
    python = shlex.quote(sys.executable)
    spec = fit_spec(tmp_path)
    if case == "exit":
        return replace(spec, commands=("echo '{\"loss\": 1}'", "exit 3"))
    if case == "memory":  # a real limit: Python raises MemoryError, then exits 1
        return replace(spec, commands=(MEMORY_HOG.format(python=python),))
    if case == "time_limit":
        return replace(spec, commands=("echo started", "sleep 30"), time_limit_s=0.5)
    if case == "no_output":
        return replace(spec, commands=("echo started", "sleep 30"), no_output_timeout_s=0.5)
    if case == "bad_input":
        return replace(spec, inputs={"data": ("/no/such/file.csv",)})
    assert case == "snapshot"
    return replace(spec, code_archive="0" * 64)  # never stored


@pytest.mark.parametrize(
    ("case", "kind", "status"),
    [
        ("exit", FailureKind.USER_ERROR, Status.ERROR),
        ("memory", FailureKind.OOM, Status.ERROR),
        ("time_limit", FailureKind.TIME_LIMIT, Status.ERROR),
        ("no_output", FailureKind.NO_OUTPUT, Status.ERROR),
        ("bad_input", FailureKind.USER_ERROR, Status.ERROR),
        ("snapshot", FailureKind.INFRASTRUCTURE, Status.ERROR),
    ],
)
def test_executor_records_the_failure_kind_where_it_is_known(
    tmp_path: Path, case: str, kind: FailureKind, status: Status
) -> None:
    store = Store.open(tmp_path / "store", create=True)
    record = Executor(store, LocalRuntime(stop_grace_s=1)).run(failing_spec(tmp_path, case))
    assert (record.status, record.failure_kind) == (status, kind), record.error
    assert store.get_record(record.id) == record
    stored = json.loads(
        (tmp_path / "store" / "executions" / record.id / "execution.json").read_text()
    )
    assert stored["failure_kind"] == kind.value
    (row,) = store.read_dataset("executions").to_pylist()
    assert row["failure_kind"] == kind.value and type(row["failure_kind"]) is str


def test_an_out_of_memory_line_long_before_the_end_was_survived(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store", create=True)
    spec = replace(
        fit_spec(tmp_path),
        commands=("echo 'MemoryError: retrying with a smaller batch'", "seq 1 300", "exit 1"),
    )
    record = Executor(store, LocalRuntime()).run(spec)
    assert record.failure_kind is FailureKind.USER_ERROR
    near = replace(spec, commands=("seq 1 300", "echo 'CUDA out of memory. Tried'", "exit 1"))
    assert Executor(store, LocalRuntime()).run(near).failure_kind is FailureKind.OOM


def test_a_complete_execution_has_no_failure_kind(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store", create=True)
    spec = replace(fit_spec(tmp_path), commands=("echo 'MemoryError, caught'", "true"))
    record = Executor(store, LocalRuntime()).run(spec)
    assert (record.status, record.failure_kind) == (Status.COMPLETE, None)
    assert "failure_kind" not in (store.record_json(record.id) or {})
    (row,) = store.read_dataset("executions").to_pylist()
    assert row["failure_kind"] is None


@pytest.mark.docker
def test_an_image_the_runtime_cannot_have_is_an_infrastructure_failure(tmp_path: Path) -> None:
    require_docker()
    store = Store.open(tmp_path / "store", create=True)
    spec = replace(
        fit_spec(tmp_path, runtime="docker"),
        image="sweeper-test/does-not-exist:latest",
        pull_policy="never",
    )
    record = Executor(store, DockerRuntime()).run(spec)
    assert record.status is Status.ERROR and "is not present" in (record.error or "")
    assert record.failure_kind is FailureKind.INFRASTRUCTURE
