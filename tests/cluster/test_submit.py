"""`sweep submit` and `sweep jobs` against a real head started with `ray start --head`.

The head runs on loopback only, with every port chosen free (other Rays may run on this
machine), its own --temp-dir (so /tmp/ray/ray_current_cluster is never touched) and a
token of its own (Ray 2.60 heads require one). Teardown stops exactly the processes this
head started: its process group, its descendants and anything carrying its token; it
never runs `ray stop`, which would kill every Ray of the machine.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import ray  # noqa: F401 - puts Ray's bundled psutil on sys.path where psutil is not installed

from sweeper.store import Store
from tests.conftest import sweep_cli

if TYPE_CHECKING:
    import psutil

pytestmark = [pytest.mark.slow, pytest.mark.ray]

PORT_OPTIONS = (
    "--port",
    "--dashboard-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--ray-client-server-port",
    "--node-manager-port",
    "--object-manager-port",
    "--runtime-env-agent-port",
    "--metrics-export-port",
)


@dataclass
class Head:
    url: str  # the dashboard (job server) address
    env: dict[str, str]  # what a client of this head needs: the token and loopback settings
    token: str
    temp_dir: Path
    home: Path  # the head's HOME

    def get(self, path: str) -> Any:
        """GET a dashboard endpoint with the head's token."""
        request = urllib.request.Request(
            self.url + path, headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _own_processes(root: psutil.Process | None, token: str) -> list[psutil.Process]:
    """The processes this head started: descendants of `ray start`, or carrying its token."""
    import psutil

    found: dict[int, psutil.Process] = {}
    if root is not None:
        try:
            for proc in [root, *root.children(recursive=True)]:
                found[proc.pid] = proc
        except psutil.Error:
            pass
    for proc in psutil.process_iter():
        if proc.pid in found or proc.pid == os.getpid():
            continue
        try:
            if proc.environ().get("RAY_AUTH_TOKEN") == token:
                found[proc.pid] = proc
        except psutil.Error:
            continue
    return list(found.values())


def _stop_head(proc: subprocess.Popen[bytes], token: str) -> None:
    import psutil

    try:
        root: psutil.Process | None = psutil.Process(proc.pid)
    except psutil.Error:
        root = None
    started = _own_processes(root, token)  # before the tree comes apart
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # `ray start --block` stops its processes
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for leftover in {p.pid: p for p in [*started, *_own_processes(None, token)]}.values():
        try:
            leftover.kill()  # psutil checks the process is still the one it saw
        except psutil.Error:
            pass
    proc.wait(timeout=10)
    psutil.wait_procs(started, timeout=10)


@pytest.fixture(scope="module")
def ray_head() -> Iterator[Head]:
    # short: Ray's Unix socket paths live under the temp dir and must stay under 108 bytes
    temp_dir = Path(tempfile.mkdtemp(prefix="swh-", dir="/tmp"))
    token = secrets.token_hex(32)
    ports = _free_ports(len(PORT_OPTIONS))
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
    }
    env.pop("RAY_ADDRESS", None)
    # the head's Python is this venv's, with its bin on PATH, as after `source .venv/bin/activate`:
    # the job's `sweep` console script and the steps' `python` come from there
    # its own HOME: jobs submitted without --store keep their store in ~/.sweeper/jobs/ there
    (temp_dir / "home").mkdir()
    head_env = {
        **env,
        "PATH": os.pathsep.join([venv_bin, env.get("PATH", "")]),
        "HOME": str(temp_dir / "home"),
    }
    command = [
        os.path.join(venv_bin, "ray"),
        "start",
        "--head",
        "--block",
        *[f"{option}={port}" for option, port in zip(PORT_OPTIONS, ports, strict=True)],
        "--dashboard-host=127.0.0.1",
        "--include-dashboard=true",
        "--num-cpus=2",
        "--num-gpus=0",
        f"--temp-dir={temp_dir / 'ray'}",
    ]
    log_path = temp_dir / "head.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command,
            env=head_env,
            cwd=temp_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while "block forever" not in log_path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"`ray start --head` did not come up:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.5)
        # it wrote its address file in its own temp dir, not /tmp/ray
        assert (temp_dir / "ray" / "ray_current_cluster").is_file()
        yield Head(
            url=f"http://127.0.0.1:{ports[1]}",
            env=env,
            token=token,
            temp_dir=temp_dir / "ray",
            home=temp_dir / "home",
        )
    finally:
        _stop_head(proc, token)
        assert not _own_processes(None, token), "processes of the test's Ray head survived"
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_submit_follow_runs_the_sweep_as_a_job_on_the_head(
    ray_head: Head, example_project: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    started = time.monotonic()
    proc = sweep_cli(
        "submit",
        "--address",
        ray_head.url,
        "--follow",
        "--",
        "train-model",
        "--trials",
        "4",
        "--runtime",
        "local",
        "--metric",
        "loss",
        "--store",
        str(store),
        "--json",
        cwd=example_project,
        env=ray_head.env,
        timeout=280,
    )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    job_id = lines[0]
    assert job_id.startswith("raysubmit_"), proc.stdout
    # the job's log streamed back: its entrypoint and the sweep's JSON summary
    assert any("sweeper.cli.main" in line or "sweep train-model" in line for line in lines)
    summary = json.loads(next(line for line in reversed(lines) if line.startswith("{")))
    assert summary["trials"]["complete"] == 4
    assert f"job {job_id}: SUCCEEDED" in proc.stderr
    print(f"submit --follow of 4 trials took {time.monotonic() - started:.1f}s")

    # the store (outside the job's temporary working dir) holds the 4 executions
    rows = [
        r
        for r in Store.open(store).read_dataset("executions").to_pylist()
        if r["sweep_id"] == summary["sweep_id"]
    ]
    complete = {r["execution_id"]: r for r in rows if r["status"] == "complete"}
    assert len(complete) == 4, rows

    # the driver joined the head's cluster instead of starting a Ray of its own
    job = ray_head.get(f"/api/jobs/{job_id}")
    nodes = ray_head.get("/api/v0/nodes")["data"]["result"]["result"]
    head_node = next(n["node_id"] for n in nodes if n["is_head_node"])
    assert len(nodes) == 1
    assert job["driver_node_id"] == head_node
    assert {r["ray_node"] for r in complete.values()} == {head_node}

    listed = sweep_cli("jobs", "--address", ray_head.url, "--json", env=ray_head.env, check=True)
    jobs = {j["job_id"]: j for j in json.loads(listed.stdout)}
    assert jobs[job_id]["status"] == "SUCCEEDED"
    assert jobs[job_id]["entrypoint"].startswith("sweep train-model --trials 4")
    table = sweep_cli("jobs", "--address", ray_head.url, env=ray_head.env, check=True)
    assert job_id in table.stdout and "SUCCEEDED" in table.stdout


def test_jobs_without_the_token_is_one_clear_error(ray_head: Head) -> None:
    env = {k: v for k, v in ray_head.env.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    env["RAY_AUTH_MODE"] = "disabled"
    proc = subprocess.run(
        [sys.executable, "-m", "sweeper.cli.main", "jobs", "--address", ray_head.url],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("sweep: error:")]
    assert len(errors) == 1, proc.stderr
    assert "RAY_AUTH_MODE=token" in errors[0]


@pytest.mark.parametrize("command", ["submit", "jobs"])
def test_an_unreachable_address_is_one_clear_error(command: str, example_project: Path) -> None:
    (port,) = _free_ports(1)  # nothing listens there
    address = f"http://127.0.0.1:{port}"
    args = (
        ["submit", "--address", address, "--", "train-model", "--trials", "1"]
        if command == "submit"
        else ["jobs", "--address", address]
    )
    proc = sweep_cli(*args, cwd=example_project, timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("sweep: error:")]
    assert len(errors) == 1, proc.stderr
    assert f"could not reach the Ray job server at {address}" in errors[0]
    assert proc.stdout == ""


GATED_STEPS = """
- step:
    name: gated
    image: sweeper-test/python:latest
    command: python3 ./gated.py {parameters}
    parameters:
      - name: x
        type: float
        min: 0
        max: 1
      - name: gate
        type: string
- step:
    name: broken
    image: sweeper-test/python:latest
    command: python3 -c "import sys; print('the step failed on purpose'); sys.exit(3)"
    parameters:
      - name: x
        type: float
        min: 0
        max: 1
"""

GATED_PY = """
import argparse, json, os, time
p = argparse.ArgumentParser()
p.add_argument("--x", type=float)
p.add_argument("--gate")
a = p.parse_args()
open(os.path.join(a.gate, "started"), "w").close()
while not os.path.exists(os.path.join(a.gate, "release")):
    time.sleep(0.05)
print(json.dumps({"loss": a.x}), flush=True)
"""


def _job_status(head: Head, job_id: str) -> str:
    listed = sweep_cli("jobs", "--address", head.url, "--json", env=head.env, check=True)
    return str({j["job_id"]: j for j in json.loads(listed.stdout)}[job_id]["status"])


def _wait(predicate: Any, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {predicate}"
        time.sleep(0.5)


def test_submit_without_follow_returns_the_job_id_while_the_job_runs(
    ray_head: Head, make_project: Any, tmp_path: Path
) -> None:
    project = make_project(GATED_STEPS, {"gated.py": GATED_PY})
    gate = tmp_path / "gate"
    gate.mkdir()
    store = tmp_path / "store"
    try:
        proc = sweep_cli(
            "submit", "--address", ray_head.url, "--", "gated", "--trials", "1",
            "--runtime", "local", "--metric", "loss", "-p", f"gate={gate}",
            "--store", str(store), "--json",
            cwd=project, env=ray_head.env, timeout=180,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        (job_id,) = proc.stdout.splitlines()  # only the job id
        assert job_id.startswith("raysubmit_")
        # it returned before the job could end: the job's one trial waits for `release`
        _wait(lambda: (gate / "started").exists() or _job_status(ray_head, job_id) == "FAILED")
        assert _job_status(ray_head, job_id) == "RUNNING"
    finally:
        (gate / "release").touch()
    _wait(lambda: _job_status(ray_head, job_id) in ("SUCCEEDED", "FAILED", "STOPPED"))
    assert _job_status(ray_head, job_id) == "SUCCEEDED"
    rows = Store.open(store).read_dataset("executions").to_pylist()
    assert [r["status"] for r in rows] == ["complete"]


def test_submit_follow_of_a_failing_job_exits_non_zero(
    ray_head: Head, make_project: Any, tmp_path: Path
) -> None:
    project = make_project(GATED_STEPS, {"gated.py": GATED_PY})
    store = tmp_path / "store"
    proc = sweep_cli(
        "submit", "--address", ray_head.url, "--follow", "--", "broken", "--trials", "2",
        "--runtime", "local", "--metric", "loss", "--store", str(store),
        cwd=project, env=ray_head.env, timeout=280,
    )  # fmt: skip
    assert proc.returncode != 0, f"{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    job_id = proc.stdout.splitlines()[0]
    assert job_id.startswith("raysubmit_")
    # the job's log came back: the sweep's own account of its failed trials
    assert "0 complete, 2 failed" in proc.stdout
    assert f"job {job_id}: FAILED" in proc.stderr
    assert _job_status(ray_head, job_id) == "FAILED"
    rows = Store.open(store).read_dataset("executions").to_pylist()
    assert sorted(r["status"] for r in rows) == ["error", "error"]
    assert {r["exit_code"] for r in rows} == {3}


def _sweep_rows(store: Store, sweep_id: str) -> list[dict[str, Any]]:
    return [r for r in store.read_dataset("executions").to_pylist() if r["sweep_id"] == sweep_id]


def test_a_job_without_store_keeps_its_results_on_the_head_and_follow_pulls_them(
    ray_head: Head, example_project: Path
) -> None:
    proc = sweep_cli(
        "submit", "--address", ray_head.url, "--follow", "--",
        "train-model", "--trials", "3", "--runtime", "local", "--metric", "loss", "--json",
        cwd=example_project, env=ray_head.env, timeout=280,
    )  # fmt: skip
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    job_id = proc.stdout.splitlines()[0]
    summary = json.loads(next(line for line in reversed(proc.stdout.splitlines()) if "{" in line))
    sweep_id = summary["sweep_id"]
    # it said where the results are kept, and that they came back
    head_store = ray_head.home / ".sweeper" / "jobs" / job_id / "store"
    assert f"~/.sweeper/jobs/{job_id}/store on the head" in proc.stderr
    assert f"pulled job {job_id}" in proc.stderr and "3 new executions" in proc.stderr
    assert len(_sweep_rows(Store.open(head_store), sweep_id)) == 3

    # the local store now holds the sweep: records, rows, logs, outputs and its study
    local = Store.open(example_project / ".sweeper")
    rows = _sweep_rows(local, sweep_id)
    assert sorted(r["status"] for r in rows) == ["complete"] * 3
    best = summary["best"]["execution_id"]
    logs = sweep_cli("logs", best, cwd=example_project, check=True).stdout
    assert "loss" in logs
    shown = json.loads(sweep_cli("show", best, "--json", cwd=example_project, check=True).stdout)
    assert shown["metrics"]["loss"] == summary["best"]["value"]
    for output_file in shown["outputs"]:
        assert local.has_blob(output_file["sha256"])
    status = json.loads(
        sweep_cli("status", sweep_id, "--json", cwd=example_project, check=True).stdout
    )
    assert status["trials"]["complete"] == 3 and status["status"] == "complete"

    # pulling again adds nothing; the pack jobs are not the user's jobs and left no archive
    started = time.monotonic()
    again = sweep_cli(
        "jobs", "pull", job_id, "--address", ray_head.url,
        cwd=example_project, env=ray_head.env, timeout=240,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    print(f"sweep jobs pull of a 3-execution store took {time.monotonic() - started:.1f}s")
    assert "0 new executions, 0 new sweeps" in again.stderr
    local = Store.open(example_project / ".sweeper")
    assert len(_sweep_rows(local, sweep_id)) == 3
    assert len(local.read_dataset("metrics").to_pylist()) == len(
        Store.open(head_store).read_dataset("metrics").to_pylist()
    )
    listed = sweep_cli("jobs", "--address", ray_head.url, "--json", env=ray_head.env, check=True)
    assert all(j["entrypoint"].startswith("sweep ") for j in json.loads(listed.stdout))
    _wait(lambda: not list(ray_head.temp_dir.glob("session_*/logs/sweeper-pull/*")), timeout=60)


def test_pull_of_a_job_with_its_own_store_or_an_unknown_job_is_one_clear_error(
    ray_head: Head, make_project: Any, tmp_path: Path
) -> None:
    project = make_project(GATED_STEPS, {"gated.py": GATED_PY})
    proc = sweep_cli(
        "submit", "--address", ray_head.url, "--follow", "--", "broken", "--trials", "1",
        "--runtime", "local", "--metric", "loss", "--store", str(tmp_path / "store"),
        cwd=project, env=ray_head.env, timeout=280,
    )  # fmt: skip
    job_id = proc.stdout.splitlines()[0]
    assert "pulled" not in proc.stderr and "on the head" not in proc.stderr
    for wanted, expected in ((job_id, "was submitted with --store"), ("raysubmit_nope", "no job")):
        pulled = sweep_cli(
            "jobs", "pull", wanted, "--address", ray_head.url,
            cwd=project, env=ray_head.env, timeout=120,
        )  # fmt: skip
        assert pulled.returncode != 0
        assert "Traceback" not in pulled.stderr
        errors = [line for line in pulled.stderr.splitlines() if line.startswith("sweep: error:")]
        assert len(errors) == 1 and expected in errors[0], pulled.stderr
