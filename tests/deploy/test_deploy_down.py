"""``sweep down`` ends the versions it serves as ``sweep deployment stop`` does.

A head of its own (this module stops it): two projects deploy on it; one's store is gone
by the time of ``sweep down``. The other's version is recorded ``stopped`` and its endpoint
log is kept in its store, readable once the head is gone; the lost store is a note, not a
failure, and ``down`` still stops the head.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port, sweep_cli

pytestmark = [pytest.mark.ray, pytest.mark.timeout(1200)]

#: The waits of this module: a deploy or a down (Ray under load).
WAIT = 240

VALOHAI_YAML = """\
- step:
    name: noop
    image: sweeper-test/python
    command: echo hi
- endpoint:
    name: talk
    image: sweeper-test/python
    wsgi: app:application
"""

APP = """\
def application(environ, start_response):
    if environ["PATH_INFO"] == "/boom":
        raise RuntimeError("boom for the log")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""


def _project(root: Path) -> Path:
    root.mkdir()
    (root / "valohai.yaml").write_text(VALOHAI_YAML)
    (root / "app.py").write_text(APP)
    return root


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_down_keeps_the_logs_and_records_the_versions_stopped(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.pop("RAY_ADDRESS", None)
    # a short home: Ray's socket paths under it must stay within 107 bytes
    home = tmp_path_factory.mktemp("home")
    env.update(SWEEPER_HOME=str(home), SWEEPER_SERVE_PORT=str(free_port()))
    kept, lost = _project(tmp_path / "kept"), _project(tmp_path / "lost")

    def sweep(cwd: Path, *args: str) -> tuple[int, str, str]:
        proc = sweep_cli(*args, cwd=cwd, env=env, timeout=WAIT)
        return proc.returncode, proc.stdout, proc.stderr

    code, _, err = sweep(kept, "up", "--port", str(free_port()), "--num-cpus", "8")
    assert code == 0, err
    try:
        urls = {}
        for project, name in ((kept, "live"), (lost, "gone")):
            code, out, err = sweep(
                project, "deploy", "talk", "--deployment", name, "--runtime", "local", "--json"
            )
            assert code == 0 and json.loads(out)["status"] == "ready", err
            urls[name] = json.loads(out)["urls"]["version"]["talk"]
        assert _status(urls["live"] + "boom") == 500  # a traceback in the endpoint's log
        shutil.rmtree(lost / ".sweeper")
    finally:
        code, _, err = sweep(kept, "down")
    assert code == 0, err
    assert "stopped the head of `sweep up`" in err
    assert "stopped live v1, its logs kept" in err
    (note,) = [line for line in err.splitlines() if "could not be opened" in line]
    assert str(lost) in note and "gone" not in err
    # the head is gone: what is left is what the store says
    code, out, err = sweep(kept, "deployments", "live", "--json")
    assert [(v["version"], v["status"]) for v in json.loads(out)] == [("v1", "stopped")], err
    code, out, err = sweep(kept, "deployment", "logs", "live", "v1", "talk")
    assert code == 0 and "RuntimeError: boom for the log" in out, err
