"""`sweep verify`: an execution run again from its record, compared field by field.

Real processes (the `sweep` command in a subprocess), the local runtime and Docker, a real
store. A deterministic step reproduces; one that draws unseeded random numbers does not, and
the report names the metric and the output that differ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sweeper.store import Store
from tests.conftest import sweep_cli

pytestmark = pytest.mark.timeout(900)

STEPS = """
- step:
    name: det
    image: sweeper-test/python:latest
    command: python3 ./det.py
- step:
    name: rand
    image: sweeper-test/python:latest
    command: python3 ./rand.py
- step:
    name: noisy
    image: sweeper-test/python:latest
    command: python3 ./noisy.py
"""

DET_PY = """
import json, os
with open(os.path.join(os.environ["VH_OUTPUTS_DIR"], "model.txt"), "w") as f:
    f.write("weights 1 2 3\\n")
print(json.dumps({"loss": 0.25}), flush=True)
"""

RAND_PY = """
import json, os, random
with open(os.path.join(os.environ["VH_OUTPUTS_DIR"], "model.txt"), "w") as f:
    f.write(f"weights {random.random()}\\n")
print(json.dumps({"loss": random.random(), "epochs": 3}), flush=True)
"""

#: A metric that differs from run to run in its ninth digit only.
NOISY_PY = """
import json, random
print(json.dumps({"loss": 1.0 + random.random() * 1e-9}), flush=True)
"""


@pytest.fixture
def project(make_project: Any) -> Path:
    return make_project(STEPS, {"det.py": DET_PY, "rand.py": RAND_PY, "noisy.py": NOISY_PY})


def run_step(project: Path, step: str, runtime: str = "local") -> dict[str, Any]:
    proc = sweep_cli("run", step, "--runtime", runtime, "--json", cwd=project, check=True)
    return json.loads(proc.stdout)


def one_error(proc: Any) -> str:
    """The stderr of a command that failed with one `sweep: error:` paragraph."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("sweep: error:") == 1, proc.stderr
    return str(proc.stderr)


@pytest.mark.parametrize("runtime", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_a_deterministic_step_is_reproduced_and_its_record_says_so(
    project: Path, runtime: str
) -> None:
    first = run_step(project, "det", runtime)
    proc = sweep_cli("verify", f"#{first['counter']}", cwd=project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "  same     exit status: complete (exit code 0)" in proc.stdout
    assert "  same     metric.loss: 0.25" in proc.stdout
    assert "  same     output.model.txt: sha256:" in proc.stdout
    assert "DIFFERS" not in proc.stdout
    assert f"#{first['counter']} {first['id']}: reproduced by #" in proc.stdout

    # The re-run's record says what it verifies; the original's `show` lists it.
    rerun = json.loads(sweep_cli("show", "latest", "--json", cwd=project, check=True).stdout)
    assert rerun["id"] != first["id"]
    assert rerun["verifies"] == {"execution": first["id"], "tolerance": 0.0}
    assert rerun["image_digest"] == first["image_digest"]
    assert rerun["spec"]["code_archive"] == first["spec"]["code_archive"]
    shown = sweep_cli("show", first["id"], cwd=project, check=True).stdout
    assert f"verified by #{rerun['counter']} {rerun['id']}: reproduced" in shown
    shown = sweep_cli("show", rerun["id"], cwd=project, check=True).stdout
    assert f"verifies #{first['counter']} {first['id']}: reproduced" in shown
    # An ordinary record has no such field (execution.json as before).
    assert "verifies" not in first


def test_unseeded_random_numbers_name_the_metric_and_the_output_that_differ(
    project: Path,
) -> None:
    first = run_step(project, "rand")
    proc = sweep_cli("verify", first["id"], cwd=project)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "  DIFFERS  metric.loss: " in proc.stdout
    assert "  DIFFERS  output.model.txt: sha256:" in proc.stdout
    assert "  same     metric.epochs: 3" in proc.stdout
    assert "(metric.loss, output.model.txt differ)" in proc.stdout

    report = json.loads(sweep_cli("verify", first["id"], "--json", cwd=project).stdout)
    assert report["reproduced"] is False
    checks = {check["name"]: check for check in report["checks"]}
    assert checks["metric.loss"]["expected"] == first["metrics"]["loss"]
    assert not checks["metric.loss"]["equal"] and not checks["output.model.txt"]["equal"]
    assert checks["exit status"]["equal"] and checks["metric.epochs"]["equal"]
    shown = sweep_cli("show", first["id"], cwd=project, check=True).stdout
    assert shown.count("not reproduced (metric.loss, output.model.txt differ)") == 2


def test_a_tolerance_lets_a_metric_differ_that_little(project: Path) -> None:
    first = run_step(project, "noisy")
    exact = sweep_cli("verify", first["id"], cwd=project)
    assert exact.returncode == 1 and "DIFFERS  metric.loss" in exact.stdout, exact.stdout
    within = sweep_cli("verify", first["id"], "--tolerance", "1e-6", cwd=project)
    assert within.returncode == 0, within.stdout + within.stderr
    assert "same     metric.loss: 1" in within.stdout


def test_bad_input_is_one_error(project: Path) -> None:
    first = run_step(project, "det")
    assert "unknown execution '#99'" in one_error(sweep_cli("verify", "#99", cwd=project))
    negative = sweep_cli("verify", first["id"], "--tolerance", "-1", cwd=project)
    assert "--tolerance must not be negative" in one_error(negative)
    no_sweep = sweep_cli("verify", "nosuchsweep", "--sample", "2", cwd=project)
    assert "no sweep 'nosuchsweep'" in one_error(no_sweep)

    store = Store.open(str(project / ".sweeper"))
    snapshot = store.blob_local_path(first["spec"]["code_archive"])
    assert snapshot is not None and snapshot.is_file()
    snapshot.unlink()
    gone = one_error(sweep_cli("verify", first["id"], cwd=project))
    assert "its code snapshot is no longer in the store" in gone
    assert first["id"] in gone
