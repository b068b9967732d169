"""Deployment nodes on a real Ray Serve: a ``sweep up`` head for the module, real HTTP.

The bundled example's deploy-pipeline (train -> staging -> check over HTTP -> production),
a deployment node that fails under ``on-error: stop-next``, a node whose deployment's
valohai.yaml block gives its replicas and runtime, and a resume that keeps a ready
version as it keeps a complete execution. Each test deploys its own deployment names.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE, free_port, sweep_cli
from tests.pipeline.support import PROBE_PY, PROBE_STEP

pytestmark = [pytest.mark.ray, pytest.mark.timeout(1500)]

#: The waits of this module: a pipeline run with a deploy (Ray under load), a request.
DEPLOY_WAIT = 400

ENDPOINT_APP = """\
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [open("data/model.txt").read().encode()]
"""

DEPLOYING = (
    PROBE_STEP
    + """
- endpoint:
    name: greet
    image: sweeper-test/python:latest
    wsgi: app:application
    files:
      - {name: model, path: data/model.txt}
- endpoint:
    name: broken
    image: sweeper-test/python:latest
    wsgi: missing_module:app
- pipeline:
    name: failing
    nodes:
      - {name: train, type: execution, step: probe}
      - {name: deploy, type: deployment, deployment: broken, endpoints: [broken], on-error: stop-next}
      - {name: notify, type: execution, step: probe}
      - {name: after, type: execution, step: probe}
    edges:
      - [train.output.model*, after.input.model]
      - [deploy.deployment.id, notify.parameter.marker]
- pipeline:
    name: resumable
    nodes:
      - {name: train, type: execution, step: probe}
      - {name: deploy, type: deployment, deployment: resumed, endpoints: [greet], aliases: [live]}
      - {name: after, type: execution, step: probe}
    edges:
      - [train.output.model*, deploy.file.greet.model]
      - [deploy.deployment.version_id, after.environment-variable.DEPLOYED]
- deployment:
    name: declared
    defaults: {target: ray, replicas: 2, runtime: docker}
- pipeline:
    name: by-block
    nodes:
      - {name: train, type: execution, step: probe}
      - {name: deploy, type: deployment, deployment: declared, endpoints: [greet]}
    edges:
      - [train.output.model*, deploy.file.greet.model]
"""
)


@dataclass
class Head:
    """The module's ``sweep up`` head: its environment and Serve's base URL."""

    env: dict[str, str]
    base: str

    def sweep(self, cwd: Path, *args: str) -> tuple[int, str, str]:
        proc = sweep_cli(*args, cwd=cwd, env=self.env, timeout=DEPLOY_WAIT)
        return proc.returncode, proc.stdout, proc.stderr

    def pipeline(self, cwd: Path, *args: str) -> tuple[int, dict, str]:
        runtime = ("--runtime", "local") if args[0] == "run" else ()
        code, out, err = self.sweep(cwd, "pipeline", *args, *runtime, "--json")
        assert out.strip(), err
        return code, json.loads(out), err


def post(url: str, body: dict | None = None) -> tuple[int, str]:
    """(status, body) of a POST (a GET without ``body``)."""
    data = json.dumps(body).encode() if body is not None else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Head]:
    home = Path(tmp_path_factory.mktemp("home"))
    http_port = free_port()
    env_clean = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env_clean.pop("RAY_ADDRESS", None)
    env = {**env_clean, "SWEEPER_HOME": str(home), "SWEEPER_SERVE_PORT": str(http_port)}
    proc = sweep_cli(
        "up", "--port", str(free_port()), "--num-cpus", "16", env=env, timeout=DEPLOY_WAIT
    )
    assert proc.returncode == 0, proc.stderr
    try:
        yield Head(env, f"http://127.0.0.1:{http_port}")
    finally:
        sweep_cli("down", env=env, timeout=DEPLOY_WAIT)


def test_the_example_trains_deploys_to_staging_checks_it_and_promotes_it(
    head: Head, tmp_path: Path
) -> None:
    project = tmp_path / "configs"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".sweeper", "__pycache__"))
    code, summary, err = head.pipeline(project, "run", "deploy-pipeline")
    assert code == 0 and summary["status"] == "complete", err
    nodes = summary["nodes"]
    assert {n: nodes[n]["status"] for n in nodes} == dict.fromkeys(nodes, "complete")
    # production deploys what staging did, at the same code: the alias moves to that version
    version_id = nodes["staging"]["version_id"]
    assert version_id and nodes["production"]["version_id"] == version_id
    code, out, err = head.sweep(project, "show", nodes["check"]["execution_id"], "--json")
    assert code == 0, err
    check = json.loads(out)
    assert check["parameters"] == {
        "url": f"{head.base}/spirals/v1/predict/",
        "version_id": version_id,
    }
    assert check["metrics"]["endpoint_ok"] == 1
    code, out, err = head.sweep(project, "deployments", "spirals", "--json")
    (version,) = json.loads(out)
    assert (version["version"], version["status"]) == ("v1", "ready"), err
    assert sorted(version["aliases"]) == ["production", "staging"]
    assert version["creator"]["pipeline_run_id"] == summary["pipeline_run_id"]
    assert version["files"][0]["producer_execution_id"] == nodes["train"]["execution_id"]
    status, body = post(f"{head.base}/spirals/production/predict/", {"points": [[0.0, 0.0]]})
    assert status == 200 and len(json.loads(body)["classes"]) == 1, body
    assert post(f"{head.base}/spirals/staging/predict/", {"nope": 1})[0] == 400


def test_a_failing_deployment_node_fails_alone_under_stop_next(head: Head, make_project) -> None:
    project = make_project(DEPLOYING, {"probe.py": PROBE_PY, "app.py": ENDPOINT_APP})
    code, summary, err = head.pipeline(project, "run", "failing")
    nodes = summary["nodes"]
    assert nodes["deploy"]["status"] == "error"
    assert "missing_module" in nodes["deploy"]["error"], nodes["deploy"]
    # stop-next: what the node feeds is skipped, the rest of the pipeline runs
    assert nodes["notify"]["status"] == "skipped"
    assert nodes["train"]["status"] == nodes["after"]["status"] == "complete"
    assert code != 0 and summary["status"] == "error"
    code, out, err = head.sweep(project, "deployments", "broken", "--json")
    assert [v["status"] for v in json.loads(out)] == ["failed"], err


def test_a_declared_deployment_block_gives_the_node_its_replicas_and_runtime(
    head: Head, make_project
) -> None:
    project = make_project(DEPLOYING, {"probe.py": PROBE_PY, "app.py": ENDPOINT_APP})
    code, summary, err = head.pipeline(project, "run", "by-block")  # the run's --runtime local
    assert code == 0 and summary["status"] == "complete", err
    code, out, err = head.sweep(project, "deployments", "declared", "--json")
    (version,) = json.loads(out)
    # the block's defaults, as `sweep deploy --deployment declared` takes them
    assert (version["replicas"], version["runtime"]) == (2, "docker"), version
    assert version["image_digests"]["greet"].startswith("sha256:")
    assert post(version["urls"]["version"]["greet"]) == (200, "model x=0.5\n")


def test_resume_keeps_the_ready_version_as_a_complete_execution(
    head: Head, make_project, tmp_path: Path
) -> None:
    project = make_project(DEPLOYING, {"probe.py": PROBE_PY, "app.py": ENDPOINT_APP})
    # `after` fails while its marker file does not exist (and makes it): once
    marker = tmp_path / "marker"
    code, summary, err = head.pipeline(project, "run", "resumable", "-p", f"after.marker={marker}")
    nodes = summary["nodes"]
    assert code != 0 and nodes["deploy"]["status"] == "complete", err
    assert nodes["after"]["status"] == "error"
    version_id = nodes["deploy"]["version_id"]
    code, out, err = head.sweep(project, "deployments", "resumed", "--json")
    (version,) = json.loads(out)
    assert post(version["urls"]["alias:live"]["greet"]) == (200, "model x=0.5\n")
    code, summary, err = head.pipeline(project, "resume", summary["pipeline_run_id"])
    nodes = summary["nodes"]
    assert code == 0 and summary["status"] == "complete", err
    assert nodes["deploy"]["version_id"] == version_id  # kept, not deployed again
    code, out, err = head.sweep(project, "deployments", "resumed", "--json")
    assert [v["version"] for v in json.loads(out)] == ["v1"], err


def test_without_a_ray_that_outlives_the_command_the_run_is_refused_up_front(
    tmp_path: Path,
) -> None:
    project = tmp_path / "configs"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".sweeper", "__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["SWEEPER_HOME"] = str(tmp_path / "no-head")
    proc = sweep_cli("pipeline", "run", "deploy-pipeline", cwd=project, env=env, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("sweep: error:") == 1, proc.stderr
    assert "run `sweep up`" in proc.stderr and "Traceback" not in proc.stderr
    assert not (project / ".sweeper").exists() or not list(project.glob(".sweeper/pipelines/*"))
