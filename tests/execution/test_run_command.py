"""`sweep run`: real processes and real containers, the record, the store, bad input."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sweeper.status import Status
from sweeper.store import Store
from tests.coload import cpu_load
from tests.conftest import sweep_cli
from tests.faults.conftest import records, sweep_popen, wait_for
from tests.requirements import require_docker

STDLIB_STEP = """
- step:
    name: echo
    image: sweeper-test/python:latest
    command:
      - python3 ./echo.py {parameters}
    parameters:
      - name: message
        type: string
        default: hello
      - name: count
        type: integer
        default: 2
        min: 1
        max: 10
    inputs:
      - name: data
        default: data.txt
    environment-variables:
      - name: API_TOKEN
        default: s3cr3t-value
- step:
    name: fail
    image: sweeper-test/python:latest
    command: python3 -c "import sys; print('about to fail'); sys.exit(3)"
- step:
    name: slow
    image: sweeper-test/python:latest
    command: python3 -c "import time; print('start', flush=True); time.sleep(60)"
    time-limit: 2
- step:
    name: waits
    image: sweeper-test/python:latest
    command: python3 -c "import time; print('start', flush=True); time.sleep(120)"
"""

ECHO_PY = """
import json, os, sys
inputs = os.environ["VH_INPUTS_DIR"]
with open(os.path.join(inputs, "data", "data.txt")) as f:
    data = f.read()
print("argv", json.dumps(sys.argv[1:]))
print("token", os.environ.get("API_TOKEN"))
with open(os.path.join(os.environ["VH_CONFIG_DIR"], "parameters.json")) as f:
    params = json.load(f)
for i in range(params["count"]):
    print(json.dumps({"step": i, "value": i * 1.5, "data": data.strip()}))
with open(os.path.join(os.environ["VH_OUTPUTS_DIR"], "result.txt"), "w") as f:
    f.write(data.upper())
print("repo", os.getcwd() == os.environ["VH_REPOSITORY_DIR"])
"""


@pytest.fixture
def echo_project(make_project):
    return make_project(STDLIB_STEP, {"echo.py": ECHO_PY, "data.txt": "some data\n"})


def _run(project: Path, *args: str, runtime: str = "local", timeout: float = 120):
    return sweep_cli(
        "run",
        *args,
        "--runtime",
        runtime,
        "--json",
        "-f",
        str(project / "valohai.yaml"),
        timeout=timeout,
    )


@pytest.mark.parametrize("runtime", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_run_records_metrics_inputs_outputs(echo_project: Path, runtime: str) -> None:
    proc = _run(
        echo_project,
        "echo",
        "-p",
        "count=3",
        "-p",
        "message=x; touch /tmp/sweeper-owned",
        runtime=runtime,
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["status"] == "complete" and record["exit_code"] == 0
    assert record["runtime"] == runtime
    assert record["metrics"] == {"step": 2, "value": 3.0, "data": "some data"}
    assert record["parameters"] == {"message": "x; touch /tmp/sweeper-owned", "count": 3}
    # the hostile value reached the program as one argument and ran nothing
    assert 'argv ["--message=x; touch /tmp/sweeper-owned", "--count=3"]' in proc.stderr
    assert not Path("/tmp/sweeper-owned").exists()
    assert "repo True" in proc.stderr
    # secrets never appear in the log or the record
    assert "s3cr3t-value" not in proc.stderr and "s3cr3t-value" not in proc.stdout
    assert record["environment"]["API_TOKEN"] == "****"
    (data_input,) = record["inputs"]
    assert data_input["path"] == "data/data.txt"
    assert data_input["sha256"] == hashlib.sha256(b"some data\n").hexdigest()
    (out,) = record["outputs"]
    assert out["path"] == "result.txt" and out["uri"] == f"datum://{out['sha256']}"
    store = Store.open(echo_project / ".sweeper")
    blob = store.blob_local_path(out["sha256"])
    assert blob is not None and blob.read_bytes() == b"SOME DATA\n"
    if runtime == "docker":
        assert record["image_digest"]
    rows = store.read_dataset("executions").to_pylist()
    assert [r["execution_id"] for r in rows] == [record["id"]]
    logs = (echo_project / ".sweeper" / "executions" / record["id"] / "logs.txt").read_text()
    assert "****" in logs and "s3cr3t-value" not in logs


def _started(project: Path) -> str:
    """The id of the project's one execution, once it has started."""

    def started() -> str | None:
        store = project / ".sweeper"
        found = records(store) if store.exists() else []
        return found[0]["id"] if found and found[0]["status"] == "started" else None

    return str(wait_for(started, timeout=120))


def _container_of(execution_id: str) -> str:
    """The id of the container that runs ``execution_id``, once it exists."""
    filters = {"label": f"sweeper.execution_id={execution_id}"}
    client = require_docker()
    return str(wait_for(lambda: [c.id for c in client.containers.list(filters=filters)], 120)[0])


def test_failing_step_exit_status_and_record(echo_project: Path) -> None:
    proc = _run(echo_project, "fail")
    assert proc.returncode == 3
    record = json.loads(proc.stdout)
    assert record["status"] == "error" and record["exit_code"] == 3
    assert "about to fail" in proc.stderr


def test_time_limit_stops_and_says_why(echo_project: Path) -> None:
    proc = _run(echo_project, "slow")  # the step sleeps 60 s; its limit is 2 s
    record = json.loads(proc.stdout)
    assert proc.returncode != 0
    assert record["status"] == "error"
    assert "time limit" in record["error"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], 'unknown step "nope"'),
        (["echo", "-p", "count=abc"], '"abc"'),
        (["echo", "-p", "count=99"], "count"),
        (["echo", "-p", "colour=red"], "colour"),
        (["echo", "--input", "data=/does/not/exist.txt"], "/does/not/exist.txt"),
        (["echo", "--input", "data=ftp://example.com/x"], "ftp"),
    ],
)
def test_bad_input_one_message_no_traceback_nothing_left(
    echo_project: Path, args: list[str], message: str
) -> None:
    proc = _run(echo_project, *args)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("sweep: error:")
    executions = echo_project / ".sweeper" / "executions"
    assert not executions.exists() or not any(executions.iterdir())


@pytest.mark.docker
def test_missing_image_under_pull_never(echo_project: Path) -> None:
    text = (
        (echo_project / "valohai.yaml")
        .read_text()
        .replace("sweeper-test/python:latest", "sweeper-test/absent:1", 1)
    )
    (echo_project / "valohai.yaml").write_text(text)
    proc = _run(echo_project, "echo", "--pull", "never", runtime="docker")
    assert proc.returncode != 0
    assert "sweeper-test/absent:1" in proc.stderr and "Traceback" not in proc.stderr


def test_reuse_show_logs_outputs_rerun(echo_project: Path, tmp_path: Path) -> None:
    first = json.loads(_run(echo_project, "echo").stdout)
    again = json.loads(_run(echo_project, "echo", "--reuse").stdout)
    assert again["reused_from"] == first["id"] and again["status"] == "complete"
    assert again["outputs"] == first["outputs"]
    assert again["counter"] == first["counter"] + 1
    config = ["-f", str(echo_project / "valohai.yaml")]
    shown = json.loads(sweep_cli("show", "#1", "--json", *config, check=True).stdout)
    assert shown["id"] == first["id"]
    latest = json.loads(sweep_cli("show", "latest", "--json", *config, check=True).stdout)
    assert latest["id"] == again["id"]
    logs = sweep_cli("logs", first["id"], *config, check=True).stdout
    assert '"value": 1.5' in logs
    sweep_cli("outputs", first["id"], "-d", str(tmp_path / "out"), *config, check=True)
    assert (tmp_path / "out" / "result.txt").read_text() == "SOME DATA\n"
    rerun = sweep_cli("rerun", first["id"], "--json", *config)
    assert rerun.returncode == 0, rerun.stderr
    record = json.loads(rerun.stdout)
    assert record["id"] != first["id"]
    assert record["parameters"] == first["parameters"]
    assert [i["sha256"] for i in record["inputs"]] == [i["sha256"] for i in first["inputs"]]
    assert record["code_version"] == first["code_version"]
    unknown = sweep_cli("show", "01NOPE", *config)
    assert unknown.returncode != 0 and "Traceback" not in unknown.stderr


@pytest.mark.parametrize("moment", ["running", "starting"])
def test_ctrl_c_stops_cleanly(echo_project: Path, moment: str) -> None:
    """Ctrl-C records `stopped`, on a busy machine too: while the step runs, or as soon as the
    execution's record exists (the step starting, or not started yet). The step has no time
    limit: a limit that passes before the Ctrl-C is handled is an `error`, rightly."""
    executions = echo_project / ".sweeper" / "executions"
    with cpu_load(2):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sweeper.cli.main",
                "run",
                "waits",
                "--runtime",
                "local",
                "--json",
                "-f",
                str(echo_project / "valohai.yaml"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            if moment == "running":  # once the step has printed: the stop reaches it running
                wait_for(
                    lambda: any("start" in p.read_text() for p in executions.glob("*/logs.txt"))
                )
            else:
                wait_for(lambda: any(executions.glob("*/execution.json")), interval=0.005)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=100)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    record = json.loads(out)
    assert record["status"] == "stopped", err
    assert proc.returncode != 0


def test_ctrl_c_as_the_execution_thread_starts_stops_it() -> None:
    """A Ctrl-C that comes while `sweep run` starts the execution's thread stops the execution
    (it used to escape as KeyboardInterrupt and leave the execution running, unrecorded)."""
    from sweeper.cli.commands_exec import _run_with_ctrl_c
    from sweeper.execution.runner import StopToken
    from sweeper.record import ExecutionRecord

    def execution(stop: StopToken) -> ExecutionRecord:
        signal.raise_signal(signal.SIGINT)  # the user's Ctrl-C, as this thread begins
        assert stop.event.wait(10), "the Ctrl-C did not reach the execution"
        return ExecutionRecord(id="e1", status=stop.reason)

    for _ in range(5):  # the thread's start is a short moment: catch it more than once
        try:
            record = _run_with_ctrl_c(execution)
        except KeyboardInterrupt:
            pytest.fail("the Ctrl-C escaped while the execution's thread started")
        assert record.status == Status.STOPPED
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_dry_run_prints_only_commands(echo_project: Path) -> None:
    proc = sweep_cli(
        "run", "echo", "--dry-run", "-p", "message=it's", "-f", str(echo_project / "valohai.yaml")
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "python3 ./echo.py '--message=it'\"'\"'s' --count=2\n"


@pytest.mark.docker
def test_bundled_example_trains_inside_its_image(example_project: Path) -> None:
    proc = sweep_cli(
        "run", "train-model", "--runtime", "docker", "-p", "epochs=2", "--json", cwd=example_project
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["image"] == "sweeper-test/python:latest" and record["image_digest"]
    assert record["metrics"]["epoch"] == 2
    assert [o["path"] for o in record["outputs"]] == ["model.npz"]


@pytest.mark.docker
def test_declared_mounts_and_only_those_reach_the_container(make_project, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "note.txt").write_text("from the host\n")
    # the step holds its container open until the test, done inspecting it, writes `release`
    project = make_project(
        f"""
- step:
    name: mounted
    image: sweeper-test/busybox:latest
    command:
      - cat /data/note.txt
      - touch /data/new.txt || echo read-only
      - until [ -e /data/release ]; do sleep 0.1; done
    mounts:
      - source: {shared}
        destination: /data
        readonly: true
"""
    )
    proc = sweep_popen("run", "mounted", "--runtime", "docker", "--json", cwd=project)
    try:
        container = require_docker().containers.get(_container_of(_started(project)))
        mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
    finally:
        (shared / "release").write_text("")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    # the work folder and the declared mount, nothing else (no docker socket, no home)
    assert sorted(mounts) == ["/data", "/valohai"], mounts
    assert (mounts["/data"]["Type"], mounts["/data"]["RW"]) == ("bind", False)
    assert Path(mounts["/data"]["Source"]) == shared
    assert mounts["/valohai"]["RW"] is True
    assert "from the host" in err
    assert "read-only" in err
    assert not (shared / "new.txt").exists()
    assert json.loads(out)["status"] == "complete"
