"""A version served from a worker of the no-shared-disk bed: its code and files travel.

The store and the project lie in pytest's base temp folder, which the worker cannot see;
the head has no CPUs, so the replica lands on the worker. The deploy command ends before
the first request, and a replica killed with ``kill -9`` comes back with its files: nothing
it needs comes from the driver's disk or the driver itself.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.nodisk import NoDiskCluster, no_disk_cluster
from tests.conftest import free_port, sweep_cli

pytestmark = [pytest.mark.ray, pytest.mark.timeout(1500)]

VALOHAI_YAML = """\
- step:
    name: noop
    image: sweeper-test/python
    command: echo hi
- endpoint:
    name: where
    image: sweeper-test/python
    wsgi: app:application
    files:
      - name: model
        path: model/model.txt
"""

APP = """\
import json
import os


def application(environ, start_response):
    body = json.dumps({
        "model": open("model/model.txt").read().strip(),
        "cwd": os.getcwd(),
        "pid": os.getpid(),
    })
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode()]
"""


@pytest.fixture(scope="module")
def nodisk_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NoDiskCluster]:
    """One worker node blind to pytest's base temp folder: the project and the store."""
    with no_disk_cluster(tmp_path_factory.getbasetemp(), workers=1) as cluster:
        yield cluster


def _answer(url: str, deadline_s: float) -> dict[str, object]:
    """The endpoint's JSON answer, retried while Serve replaces a replica."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                return dict(json.loads(response.read()))
        except (OSError, urllib.error.HTTPError, ValueError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_a_version_on_a_worker_without_the_store_answers_and_survives_kill_9(
    tmp_path: Path, nodisk_cluster: NoDiskCluster
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "valohai.yaml").write_text(VALOHAI_YAML)
    (project / "app.py").write_text(APP)
    (project / "trained.txt").write_text("weights-42\n")
    http_port = free_port()
    env = {**nodisk_cluster.driver_env, "SWEEPER_SERVE_PORT": str(http_port)}
    # the local runtime: the app runs in the replica's own process on the worker (cwd, pid)
    proc = sweep_cli(
        "deploy", "where", "--deployment", "far", "--file", "where.model=trained.txt",
        "--address", nodisk_cluster.address, "--runtime", "local", "--json",
        cwd=project, env=env, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = json.loads(proc.stdout)
    assert record["status"] == "ready"
    url = f"http://127.0.0.1:{http_port}/far/v1/where/"
    assert record["urls"]["version"]["where"] == url
    (worker,) = nodisk_cluster.workers.values()
    first = _answer(url, 60)
    # the file's bytes, in a folder on the worker's own disk
    assert first["model"] == "weights-42"
    assert Path(str(first["cwd"])).is_relative_to(worker.area)
    os.kill(int(str(first["pid"])), signal.SIGKILL)
    again = _answer(url, 600)  # Serve starts another replica; the deploy command is gone
    assert again["pid"] != first["pid"]
    assert again["model"] == "weights-42"
    assert Path(str(again["cwd"])).is_relative_to(worker.area)
