"""Containers and processes that end badly, and what a container is allowed to do.

A container killed from outside, one over its memory limit, steps that ignore SIGTERM:
each is recorded with the right status and reason and leaves nothing behind. A live
container is inspected through the Docker SDK: not privileged, no-new-privileges, only
the work-folder mount. Secrets never reach records, logs, Parquet or ``sweep show``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import sweep_cli
from tests.faults.conftest import (
    containers,
    containers_left,
    processes_under,
    records,
    sweep_popen,
    wait_for,
)

pytestmark = [pytest.mark.faults]

STEPS = """
- step:
    name: hold
    image: sweeper-test/busybox:latest
    command:
      - echo holding
      - sleep 60
- step:
    name: hog
    image: sweeper-test/python:latest
    command: python3 -c "import time; b = bytearray(b'x' * (400 << 20)); print('allocated', flush=True); time.sleep(30)"
    resources:
      memory:
        max: 64
- step:
    name: stubborn
    image: sweeper-test/python:latest
    command: python3 ./stubborn.py
    time-limit: 2s
- step:
    name: leaky
    image: sweeper-test/python:latest
    command: python3 ./leaky.py
    environment-variables:
      - name: DB_PASSWORD
        default: hunter2-db-pass-ABCDEF
      - name: PLAIN
        default: visible-value
"""

STUBBORN_PY = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ignoring SIGTERM", flush=True)
while True:
    time.sleep(0.2)
"""

LEAKY_PY = """
import json, os, sys, time
token, password = os.environ["API_TOKEN"], os.environ["DB_PASSWORD"]
print("token is", token, "password is", password, flush=True)
print(json.dumps({"loss": 0.5, "token": token, "note": "x" + password + "y"}), flush=True)
print("on stderr:", token, file=sys.stderr, flush=True)
with open(os.path.join(os.environ["VH_OUTPUTS_DIR"], "result.txt"), "w") as handle:
    handle.write("fine\\n")
# with HOLD set, hold the container open until the test writes `release` in the work folder
release = os.path.join(os.environ["VH_OUTPUTS_DIR"], "..", "release")
while os.environ.get("HOLD") and not os.path.exists(release):
    time.sleep(0.05)
"""

TOKEN = "tok-SUPERSECRET-4242-zz"
PASSWORD = "hunter2-db-pass-ABCDEF"


@pytest.fixture
def project(make_project) -> Path:
    return make_project(STEPS, {"stubborn.py": STUBBORN_PY, "leaky.py": LEAKY_PY})


def _record(project: Path) -> dict:
    found = records(project / ".sweeper")
    assert len(found) == 1, found
    return found[0]


def _started(project: Path) -> str:
    """The id of the project's one execution, once it has started."""

    def started() -> str | None:
        found = records(project / ".sweeper") if (project / ".sweeper").exists() else []
        return found[0]["id"] if found and found[0]["status"] == "started" else None

    return str(wait_for(started, timeout=60))


def _container_of(execution_id: str) -> str:
    label = f"sweeper.execution_id={execution_id}"
    return str(wait_for(lambda: (containers(label) or [None])[0], timeout=60))


def _holding_container(project: Path) -> dict:
    """Docker's view of the one execution's container, once its step holds it open.

    Waits for the step's own first line in the execution's log, so the container is past
    create and start and is running the step (which holds until the test releases it).
    """
    import docker

    execution_id = _started(project)
    log = project / ".sweeper" / "executions" / execution_id / "logs.txt"
    wait_for(lambda: log.exists() and "token is" in log.read_text(errors="replace"), timeout=60)
    label = f"sweeper.execution_id={execution_id}"
    running = wait_for(lambda: containers_running(label), timeout=60)
    assert len(running) == 1, running
    return dict(docker.from_env().containers.get(running[0]).attrs)


def containers_running(label: str) -> list[str]:
    """Ids of the running containers that carry ``label``."""
    return [c for c in containers(label) if _state(c) == "running"]


def _state(container: str) -> str:
    return subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Status}}", container],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()


def _docker_logs(container: str) -> str:
    return subprocess.run(
        ["docker", "logs", container], capture_output=True, text=True, check=False
    ).stdout


def _leftovers(project: Path) -> list[str]:
    """Containers of this project's executions still there (other tests may run beside us)."""
    return [
        c
        for r in records(project / ".sweeper")
        for c in containers_left(f"sweeper.execution_id={r['id']}")
    ]


@pytest.mark.docker
def test_container_killed_from_outside_is_recorded_as_crashed(project: Path) -> None:
    proc = sweep_popen("run", "hold", "--runtime", "docker", cwd=project)
    container = _container_of(_started(project))
    # kill the step itself, once it runs (it has printed), not a container still starting
    wait_for(lambda: "holding" in _docker_logs(container), timeout=120)
    subprocess.run(["docker", "kill", container], check=True, capture_output=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "Traceback" not in err
    record = _record(project)
    assert record["status"] == "crashed", record
    assert record["error"] == "container killed from outside (signal SIGKILL)"
    assert record["exit_code"] == 137
    assert _leftovers(project) == []


@pytest.mark.docker
def test_memory_limit_is_an_oom_error(project: Path) -> None:
    proc = sweep_cli("run", "hog", "--runtime", "docker", cwd=project, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    record = _record(project)
    assert record["status"] == "error", record
    assert record["error"] == "killed by the OOM killer (memory limit 64 MB)"
    assert record["resources"]["memory_mb"] == 64
    assert _leftovers(project) == []


@pytest.mark.docker
def test_docker_step_ignoring_sigterm_is_killed_after_the_grace_period(project: Path) -> None:
    # the step loops forever: only the SIGKILL after the grace period ends it
    proc = sweep_cli("run", "stubborn", "--runtime", "docker", cwd=project, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    record = _record(project)
    logs = project / ".sweeper" / "executions" / record["id"] / "logs.txt"
    assert "ignoring SIGTERM" in logs.read_text()
    assert record["status"] == "error", record
    assert record["error"] == "time limit of 2s exceeded"
    assert record["exit_code"] == 137  # SIGKILL: the SIGTERM was ignored
    assert _leftovers(project) == []


def test_local_step_ignoring_sigterm_is_killed_with_its_group(project: Path) -> None:
    proc = sweep_cli("run", "stubborn", "--runtime", "local", cwd=project, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    record = _record(project)
    assert record["status"] == "error", record
    assert record["error"] == "time limit of 2s exceeded"
    # the shell dies of the SIGTERM (143); the step that ignored it is SIGKILLed later
    assert record["exit_code"] in (137, 143)
    assert processes_under(project) == []


def _assert_no_secret_anywhere(project: Path, *texts: str) -> None:
    for secret in (TOKEN, PASSWORD):
        for text in texts:
            assert secret not in text
        for path in (project / ".sweeper").rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), f"{secret} found in {path}"


@pytest.mark.docker
def test_live_container_is_confined_and_secrets_stay_out_of_the_store(project: Path) -> None:
    import docker

    proc = sweep_popen(
        "run",
        "leaky",
        "--runtime",
        "docker",
        "-e",
        f"API_TOKEN={TOKEN}",
        "-e",
        "HOLD=1",
        "--json",
        cwd=project,
    )
    try:
        attrs = _holding_container(project)
    except (AssertionError, docker.errors.NotFound) as exc:
        # show why the step's container ended before the test could look at it
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
        raise AssertionError(f"the held container is gone: {exc}\n{out}\n{err}") from exc
    workdir = next(Path(m["Source"]) for m in attrs["Mounts"] if m["Destination"] == "/valohai")
    (workdir / "release").write_text("")
    host = attrs["HostConfig"]
    assert host["Privileged"] is False
    assert "no-new-privileges" in (host.get("SecurityOpt") or [])
    assert not host.get("CapAdd")
    assert host.get("Devices") in (None, [])
    mounts = attrs["Mounts"]
    assert [(m["Type"], m["Destination"]) for m in mounts] == [("bind", "/valohai")]
    assert Path(mounts[0]["Source"]).name == attrs["Config"]["Labels"]["sweeper.execution_id"]
    assert host.get("PidMode", "") in ("", "private") and host.get("NetworkMode") != "host"
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    record = json.loads(out)
    assert record["status"] == "complete"
    assert record["environment"]["API_TOKEN"] == "****"
    assert record["environment"]["DB_PASSWORD"] == "****"
    assert record["environment"]["PLAIN"] == "visible-value"
    assert record["metrics"]["token"] == "****"
    shown = sweep_cli("show", "latest", cwd=project, check=True).stdout
    shown_json = sweep_cli("show", "latest", "--json", cwd=project, check=True).stdout
    logs = sweep_cli("logs", "latest", cwd=project, check=True).stdout
    listed = sweep_cli("ls", "--format", "json", cwd=project, check=True).stdout
    assert "token is **** password is ****" in logs
    _assert_no_secret_anywhere(project, out, err, shown, shown_json, logs, listed)
    assert _leftovers(project) == []
