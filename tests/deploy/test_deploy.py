"""Deployments on a real Ray Serve: a head started by ``sweep up`` for the module, real HTTP.

One head serves every test here (Ray and Serve start once); each test deploys its own
deployment names, so the tests do not depend on each other's order.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from sweeper.runtime.docker import EXECUTION_LABEL
from tests.conftest import free_port, sweep_cli

pytestmark = pytest.mark.timeout(1200)

#: The waits of this module: a deploy (Ray under load), and a request.
DEPLOY_WAIT = 240

VALOHAI_YAML = """\
- step:
    name: noop
    image: sweeper-test/python
    command: echo hi
- endpoint:
    name: greet
    image: sweeper-test/python
    wsgi: app:application
    files:
      - name: greeting
        path: data/greeting.txt
- endpoint:
    name: srv
    image: sweeper-test/python
    server-command: python3 server.py
    port: {port}
- endpoint:
    name: broken-import
    image: sweeper-test/python
    wsgi: missing_module:app
- endpoint:
    name: exits
    image: sweeper-test/python
    server-command: python3 -c "import sys; print('bye'); sys.exit(3)"
    port: {other_port}
- endpoint:
    name: silent
    image: sweeper-test/python
    server-command: sleep 600
    port: {other_port}
- endpoint:
    name: neither
    image: sweeper-test/python
"""

APP = """\
import os
import socket


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/boom":
        raise RuntimeError("boom")
    if path == "/pid":
        body = str(os.getpid())
    elif path == "/host":
        body = socket.gethostname()
    else:
        body = open("data/greeting.txt").read().strip() + " " + path
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
"""

SERVER = """\
import http.server
import os


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("server " + self.path).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


print("listening", flush=True)
http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""


#: ``sweeper.api.deploy.deploy`` as a script would call it (a process of its own, as the CLI's).
API_DEPLOY = """\
import json, sys
from sweeper.api.deploy import deploy
record = deploy(["greet"], deployment=sys.argv[1], files={"greet.greeting": "hello.txt"})
print(json.dumps(record.to_dict(), default=str))
"""


@dataclass
class Head:
    """The module's ``sweep up`` head and project."""

    project: Path
    env: dict[str, str]
    base: str
    server_port: int

    def sweep(self, *args: str) -> tuple[int, str, str]:
        proc = sweep_cli(*args, cwd=self.project, env=self.env, timeout=DEPLOY_WAIT)
        return proc.returncode, proc.stdout, proc.stderr

    def deploy(self, *args: str) -> dict:
        code, out, err = self.sweep("deploy", *args, "--json")
        assert code == 0, err
        return json.loads(out)


def get(url: str) -> tuple[int, str]:
    """(status, body) of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Head]:
    project = tmp_path_factory.mktemp("project")
    server_port = free_port()
    (project / "valohai.yaml").write_text(
        VALOHAI_YAML.format(port=server_port, other_port=free_port())
    )
    (project / "app.py").write_text(APP)
    (project / "server.py").write_text(SERVER)
    (project / "hello.txt").write_text("hello\n")
    (project / "bonjour.txt").write_text("bonjour\n")
    home = Path(tmp_path_factory.mktemp("home"))
    http_port = free_port()
    env = {"SWEEPER_HOME": str(home), "SWEEPER_SERVE_PORT": str(http_port)}
    env_clean = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env_clean.pop("RAY_ADDRESS", None)
    full = {**env_clean, **env}
    proc = sweep_cli(
        "up", "--port", str(free_port()), "--num-cpus", "16", env=full, timeout=DEPLOY_WAIT
    )
    assert proc.returncode == 0, proc.stderr
    assert f"endpoints at http://127.0.0.1:{http_port}" in proc.stderr
    try:
        yield Head(project, full, f"http://127.0.0.1:{http_port}", server_port)
    finally:
        sweep_cli("down", env=full, timeout=DEPLOY_WAIT)


def test_wsgi_endpoint_answers_by_version_and_alias_and_survives_a_raising_handler(
    head: Head,
) -> None:
    record = head.deploy(
        "greet", "--deployment", "greet", "--file", "greet.greeting=hello.txt", "--alias", "live",
        "--runtime", "docker",
    )  # fmt: skip
    assert record["status"] == "ready"
    assert record["image_digests"]["greet"].startswith("sha256:")
    assert record["files"][0]["path"] == "data/greeting.txt"
    assert len(record["files"][0]["sha256"]) == 64
    url = record["urls"]["version"]["greet"]
    assert url == f"{head.base}/greet/v1/greet/"
    assert get(url + "a/b?x=1") == (200, "hello /a/b")
    assert get(record["urls"]["alias:live"]["greet"] + "q") == (200, "hello /q")
    status, body = get(url + "boom")
    assert status == 500 and "raised" in body
    assert get(url + "again") == (200, "hello /again")  # the replica keeps serving
    # the app runs inside the endpoint's image: in the version's container, not the replica
    (container,) = docker.from_env().containers.list(
        filters={"label": f"{EXECUTION_LABEL}=endpoint-{record['version_id']}-greet"}
    )
    assert get(url + "host") == (200, container.attrs["Config"]["Hostname"])
    code, out, err = head.sweep("deployment", "logs", "greet", "v1", "greet")
    assert code == 0 and "RuntimeError: boom" in out, err
    code, out, _ = head.sweep("deployments", "greet", "--json")
    listed = json.loads(out)
    assert [(v["version"], v["status"], v["aliases"]) for v in listed] == [
        ("v1", "ready", ["live"])
    ]
    assert listed[0]["urls"]["version"]["greet"] == url
    datum = "datum://" + record["files"][0]["sha256"]
    code, out, err = head.sweep("lineage", datum, "--json")
    assert code == 0, err
    assert {"id": "deployment greet v1 [ready]", "kind": "deployment"} in json.loads(out)["nodes"]
    # the log outlives the version (and its container): kept in the store at stop
    code, _, err = head.sweep("deployment", "stop", "greet", "v1")
    assert code == 0, err
    code, out, err = head.sweep("deployment", "logs", "greet", "v1", "greet")
    assert code == 0 and "RuntimeError: boom" in out, err


def test_server_command_local_then_docker_and_the_port_is_refused_twice(head: Head) -> None:
    record = head.deploy("srv", "--deployment", "srv-local", "--runtime", "local")
    url = record["urls"]["version"]["srv"]
    assert get(url + "hi") == (200, "server /hi")
    code, _, err = head.sweep("deploy", "srv", "--deployment", "srv-other", "--runtime", "local")
    assert code == 2 and err.count("sweep: error:") == 1
    assert f"port {head.server_port} is owned by srv-local v1" in err
    assert get(url + "still") == (200, "server /still")  # nothing disturbed
    code, out, _ = head.sweep("deployment", "logs", "srv-local", "v1", "srv")
    assert "listening" in out
    docker = head.deploy("srv", "--deployment", "srv-docker", "--runtime", "docker")
    assert docker["image_digests"]["srv"].startswith("sha256:")
    assert get(docker["urls"]["version"]["srv"] + "in-docker") == (200, "server /in-docker")
    code, _, err = head.sweep("deployment", "stop", "srv-local")
    assert code == 0, err
    status, body = get(url + "gone")
    assert status == 404 and "stopped" in body
    # the server's log outlives it: kept in the store when the version stopped
    code, out, err = head.sweep("deployment", "logs", "srv-local", "v1", "srv")
    assert code == 0 and "listening" in out, err


def test_alias_moves_and_rollback_drop_no_request_under_load(head: Head) -> None:
    first = head.deploy(
        "greet", "--deployment", "flip", "--file", "greet.greeting=hello.txt", "--alias", "prod"
    )
    second = head.deploy("greet", "--deployment", "flip", "--file", "greet.greeting=bonjour.txt")
    assert (first["version"], second["version"]) == ("v1", "v2")
    alias_url = first["urls"]["alias:prod"]["greet"] + "x"
    failures: list[str] = []
    answers: set[str] = set()
    done = threading.Event()

    def loop() -> None:
        while not done.is_set():
            status, body = get(alias_url)
            if status != 200:
                failures.append(f"{status} {body}")
            answers.add(body)

    threads = [threading.Thread(target=loop) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for version in ("v2", "v1", "v2", "v1", "v2"):
            code, _, err = head.sweep("deployment", "alias", "flip", "prod", version)
            assert code == 0, err
            expected = {"v1": "hello /x", "v2": "bonjour /x"}[version]
            assert get(alias_url) == (200, expected)
    finally:
        done.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert answers == {"hello /x", "bonjour /x"}
    code, _, _ = head.sweep("deployment", "alias", "flip", "prod", "v1")  # rollback
    assert code == 0 and get(alias_url) == (200, "hello /x")


def test_a_replica_killed_with_kill_9_is_replaced_and_answers(head: Head) -> None:
    # the local runtime: the app answers from the replica's own process, the one killed
    record = head.deploy(
        "greet", "--deployment", "sturdy", "--file", "greet.greeting=hello.txt",
        "--runtime", "local",
    )  # fmt: skip
    url = record["urls"]["version"]["greet"]
    status, pid = get(url + "pid")
    assert status == 200
    os.kill(int(pid), signal.SIGKILL)
    deadline = time.monotonic() + DEPLOY_WAIT
    answer = (0, "")
    while time.monotonic() < deadline:
        answer = get(url + "pid")
        if answer[0] == 200 and answer[1] != pid:
            break
        time.sleep(0.5)
    assert answer[0] == 200 and answer[1] != pid
    assert get(url + "ok") == (200, "hello /ok")


@pytest.mark.parametrize(
    ("endpoint", "runtime", "reason"),
    [
        ("broken-import", "local", "'missing_module:app' does not import: ModuleNotFoundError"),
        # in its image: the WSGI shim's own words, not "the server exited"
        ("broken-import", "docker", "'missing_module:app' does not import: ModuleNotFoundError"),
        ("exits", "local", "the server exited before it answered"),
        ("silent", "local", "the server did not answer on port"),
    ],
)
def test_a_version_that_cannot_start_fails_with_its_reason(
    head: Head, endpoint: str, runtime: str, reason: str
) -> None:
    name = f"bad-{endpoint}-{runtime}"
    # a container may take longer than 5 s to start on a loaded machine
    timeout = "5" if runtime == "local" else "60"
    code, out, err = head.sweep(
        "deploy", endpoint, "--deployment", name, "--ready-timeout", timeout,
        "--runtime", runtime, "--json",
    )  # fmt: skip
    assert code == 1, err
    record = json.loads(out)
    assert record["status"] == "failed" and reason in record["reason"]
    code, _, err = head.sweep("deployment", "alias", name, "live", "v1")
    assert code != 0 and "failed, not ready" in err
    if endpoint == "exits":
        assert "bye" in record["reason"]  # the server's last lines


def test_port_in_use_by_another_program_fails_the_version(head: Head) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", head.server_port))
        holder.listen()
        code, out, _ = head.sweep(
            "deploy", "srv", "--deployment", "taken", "--runtime", "local", "--json"
        )
    assert code == 1
    assert f"port {head.server_port} is in use on this node" in json.loads(out)["reason"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["neither"], 'exactly one of "wsgi" and "server-command" must be given'),
        (["greet"], "endpoint 'greet' needs file 'greeting'"),
        (["greet", "--file", "greet.nope=hello.txt"], 'has no file "nope"'),
        (["greet", "--file", "greet.greeting=missing.txt"], "no such file"),
        (["greet", "--file", "greet.greeting=datum://" + "0" * 64], "no such blob"),
        (["nothere"], 'unknown endpoint "nothere"'),
    ],
)
def test_bad_input_is_one_error_paragraph(head: Head, args: list[str], message: str) -> None:
    code, _, err = head.sweep("deploy", *args, "--deployment", "never")
    assert code == 2
    assert err.count("sweep: error:") == 1 and message in err
    assert "Traceback" not in err


def test_alias_to_an_unknown_version_is_refused(head: Head) -> None:
    head.deploy("greet", "--deployment", "aliased", "--file", "greet.greeting=hello.txt")
    code, _, err = head.sweep("deployment", "alias", "aliased", "prod", "v7")
    assert code == 2 and "has no version 'v7'; versions: v1" in err


def test_sweep_deploy_and_the_api_default_to_the_same_runtime_and_replicas(head: Head) -> None:
    env = {k: v for k, v in head.env.items() if k != "SWEEPER_RUNTIME"}
    from_cli = json.loads(
        sweep_cli(
            "deploy", "greet", "--deployment", "by-cli", "--file", "greet.greeting=hello.txt",
            "--json", cwd=head.project, env=env, timeout=DEPLOY_WAIT, check=True,
        ).stdout
    )  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", API_DEPLOY, "by-api"],
        cwd=head.project, env=env, capture_output=True, text=True, timeout=DEPLOY_WAIT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    from_api = json.loads(proc.stdout)
    # neither says --runtime: both take the documented default, the endpoint's image
    assert from_cli["runtime"] == from_api["runtime"] == "docker"
    assert from_cli["replicas"] == from_api["replicas"] == 1
    assert from_cli["status"] == from_api["status"] == "ready"
    assert from_cli["image_digests"] == from_api["image_digests"]
    assert from_cli["files"] == from_api["files"]
    assert from_cli.keys() - {"aliases", "urls"} == from_api.keys()
    assert get(f"{head.base}/by-api/v1/greet/x") == (200, "hello /x")
