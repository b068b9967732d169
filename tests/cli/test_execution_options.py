"""Documented options of runs and sweeps, each through the real ``sweep`` command.

`--address` to a cluster that is not there, `resume SWEEP_ID`, `status` and `logs --follow`
while work runs, `lineage datum://`, `rerun` after the code changed, the config files a step
reads, and `secret: true` on a variable with an ordinary name. Real Ray (one head per module
that the drivers join with --address), real processes, real Parquet; steps that must be
caught mid-run wait on a "release" file that the test creates, never on a timer.
"""

from __future__ import annotations

import hashlib
import json
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from sweeper.store import Store
from tests.conftest import sweep_cli
from tests.faults.conftest import kill_group, records, sweep_popen, wait_for

pytestmark = [pytest.mark.ray, pytest.mark.slow]

#: A step that says it started (a file in --gate), then waits until --gate/release exists.
GATE_STEP = """
- step:
    name: gate
    image: sweeper-test/python:latest
    command: python3 ./gate.py {parameters}
    parameters:
      - name: x
        type: float
        min: 0
        max: 1
        default: 0.5
      - name: gate
        type: string
"""

GATE_PY = """
import argparse, json, os, time, uuid
p = argparse.ArgumentParser()
p.add_argument("--x", type=float)
p.add_argument("--gate")
a = p.parse_args()
print("before the gate", flush=True)
open(os.path.join(a.gate, "started-" + uuid.uuid4().hex), "w").close()
while not os.path.exists(os.path.join(a.gate, "release")):
    time.sleep(0.05)
print("after the gate", flush=True)
print(json.dumps({"loss": (a.x - 0.3) ** 2}), flush=True)
"""


@pytest.fixture
def gated(make_project: Any, tmp_path: Path) -> tuple[Path, Path]:
    """The gate project and an empty gate folder."""
    gate = tmp_path / "gate"
    gate.mkdir()
    return make_project(GATE_STEP, {"gate.py": GATE_PY}), gate


def _started(gate: Path) -> int:
    return len(list(gate.glob("started-*")))


def _gate_sweep(project: Path, gate: Path, address: str, trials: int, parallel: int) -> list[str]:
    return [
        "gate",
        "--trials",
        str(trials),
        "--parallel",
        str(parallel),
        "--metric",
        "loss",
        "--runtime",
        "local",
        "-p",
        f"gate={gate}",
        "--json",
        "--address",
        address,
        "-f",
        str(project / "valohai.yaml"),
    ]


def _sweep_ids(project: Path) -> set[str]:
    return {p.parent.name for p in (project / ".sweeper" / "sweeps").glob("*/sweep.json")}


class _Lines:
    """The lines a process prints on stdout, read by a thread: get() waits with a timeout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue()
        assert proc.stdout is not None
        stream = proc.stdout

        def pump() -> None:
            for line in stream:
                self.queue.put(line.rstrip("\n"))
            self.queue.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def get(self, timeout: float = 120) -> str | None:
        return self.queue.get(timeout=timeout)

    def rest(self, timeout: float = 120) -> list[str]:
        out = []
        while (line := self.get(timeout)) is not None:
            out.append(line)
        return out


# -- --address ---------------------------------------------------------------------------


def test_address_of_an_unreachable_cluster_is_one_clear_error(make_project: Any) -> None:
    project = make_project(GATE_STEP, {"gate.py": GATE_PY})
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"127.0.0.1:{port}"
    # Ray alone retries such an address for many minutes: the timeout is the test
    proc = sweep_cli(
        "gate", "--trials", "1", "--metric", "loss", "--runtime", "local", "-p", "gate=/tmp",
        "--address", address, cwd=project, timeout=90,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("sweep: error:")]
    assert len(errors) == 1, proc.stderr
    assert f"could not reach the Ray cluster at {address}" in errors[0]
    assert "leave out --address" in errors[0]
    # nothing was started: no sweep to resume, no execution recorded
    assert _sweep_ids(project) == set()
    assert proc.stdout == ""


# -- resume SWEEP_ID, status while running ---------------------------------------------------


def test_resume_by_id_finishes_that_sweep_not_the_latest(
    make_project: Any, tmp_path: Path, ray_head: str
) -> None:
    project = make_project(GATE_STEP, {"gate.py": GATE_PY})
    ids = []
    gates = []
    for name in ("first", "second"):
        gate = tmp_path / name
        gate.mkdir()
        gates.append(gate)
        before = _sweep_ids(project)
        driver = sweep_popen(*_gate_sweep(project, gate, ray_head, trials=2, parallel=1))
        wait_for(lambda g=gate, d=driver: _started(g) >= 1 or d.poll() is not None, timeout=180)
        assert driver.poll() is None, driver.communicate()[1]
        kill_group(driver)  # kill -9 while its first trial runs
        (new,) = _sweep_ids(project) - before
        ids.append(new)
    first, second = ids
    for gate in gates:
        (gate / "release").touch()

    resumed = sweep_cli("resume", first, "--json", "--address", ray_head, cwd=project, timeout=240)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["sweep_id"] == first
    assert summary["trials"]["complete"] == 2 and summary["trials"]["running"] == 0

    def status(sweep_id: str) -> dict[str, Any]:
        out = sweep_cli("status", sweep_id, "--json", cwd=project, check=True).stdout
        return json.loads(out)  # type: ignore[no-any-return]

    assert status(first)["status"] == "complete"
    # the newer sweep, which a bare `sweep resume` would have picked, was left alone
    assert status(second)["status"] == "running"
    assert status(second)["trials"]["complete"] == 0
    rows = Store.open(project / ".sweeper").read_dataset("executions").to_pylist()
    assert len([r for r in rows if r["sweep_id"] == first and r["status"] == "complete"]) == 2
    assert not [r for r in rows if r["sweep_id"] == second and r["status"] == "complete"]


def test_status_shows_running_trials_while_the_sweep_runs(
    gated: tuple[Path, Path], ray_head: str
) -> None:
    project, gate = gated
    driver = sweep_popen(*_gate_sweep(project, gate, ray_head, trials=3, parallel=2))
    try:
        wait_for(lambda: _started(gate) >= 2 or driver.poll() is not None, timeout=180)
        assert driver.poll() is None, driver.communicate()[1]
        running = json.loads(sweep_cli("status", "--json", cwd=project, check=True).stdout)
        assert running["status"] == "running"
        assert running["trials_asked"] == 3
        assert running["trials"]["running"] == 2
        assert running["trials"]["complete"] == 0
        text = sweep_cli("status", cwd=project, check=True).stdout
        assert f"sweep {running['sweep_id']} (running): step gate, 3 trials asked" in text
        assert "complete 0, failed 0, pruned 0, running 2" in text
        (gate / "release").touch()
        out, err = driver.communicate(timeout=240)
    finally:
        if driver.poll() is None:
            kill_group(driver)
    assert driver.returncode == 0, err
    assert json.loads(out)["sweep_id"] == running["sweep_id"]
    done = json.loads(sweep_cli("status", "--json", cwd=project, check=True).stdout)
    assert done["status"] == "complete"
    assert done["trials"]["complete"] == 3 and done["trials"]["running"] == 0
    assert done["best"]["value"] == min(
        r["metric.loss"]
        for r in Store.open(project / ".sweeper").read_dataset("executions").to_pylist()
    )


# -- logs --follow ------------------------------------------------------------------------


def test_logs_follow_streams_a_running_execution_and_ends_with_it(
    gated: tuple[Path, Path],
) -> None:
    project, gate = gated
    run = sweep_popen("run", "gate", "--runtime", "local", "-p", f"gate={gate}", cwd=project)
    follow: subprocess.Popen[str] | None = None
    try:
        wait_for(lambda: _started(gate) >= 1 or run.poll() is not None, timeout=120)
        assert run.poll() is None, run.communicate()[1]
        (record,) = records(project / ".sweeper")
        assert record["status"] == "started"
        follow = subprocess.Popen(
            [sys.executable, "-m", "sweeper.cli.main", "logs", "--follow", record["id"]],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines = _Lines(follow)
        # printed while the step still waits at its gate: streamed, not printed at the end
        assert lines.get() == "before the gate"
        assert follow.poll() is None, "logs --follow ended while the execution runs"
        (gate / "release").touch()
        rest = lines.rest()
        assert follow.wait(timeout=60) == 0, follow.stderr.read() if follow.stderr else ""
    finally:
        (gate / "release").touch()
        if follow is not None and follow.poll() is None:
            follow.kill()
    assert rest == ["after the gate", '{"loss": 0.04000000000000001}']
    try:
        run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            kill_group(run)
    assert run.returncode == 0
    full = sweep_cli("logs", record["id"], cwd=project, check=True).stdout
    assert full.splitlines() == ["before the gate", *rest]


# -- lineage datum://, rerun ---------------------------------------------------------------

DATA_STEPS = """
- step:
    name: make
    image: sweeper-test/python:latest
    command: python3 ./make.py
- step:
    name: use
    image: sweeper-test/python:latest
    command: python3 ./use.py
    inputs:
      - name: data
"""

MAKE_PY = """
import os
with open(os.path.join(os.environ["VH_OUTPUTS_DIR"], "data.txt"), "w") as f:
    f.write("made by make\\n")
"""

USE_PY = """
import json, os
folder = os.path.join(os.environ["VH_INPUTS_DIR"], "data")
(name,) = os.listdir(folder)
text = open(os.path.join(folder, name)).read()
print(json.dumps({"chars": len(text)}), flush=True)
"""


def test_lineage_of_a_datum_names_its_producer_and_its_consumer(make_project: Any) -> None:
    project = make_project(DATA_STEPS, {"make.py": MAKE_PY, "use.py": USE_PY})
    made = json.loads(
        sweep_cli("run", "make", "--runtime", "local", "--json", cwd=project, check=True).stdout
    )
    sha = hashlib.sha256(b"made by make\n").hexdigest()
    assert [o["sha256"] for o in made["outputs"]] == [sha]
    datum = f"datum://{sha}"
    used = json.loads(
        sweep_cli(
            "run", "use", "--runtime", "local", "--input", f"data={datum}", "--json",
            cwd=project, check=True,
        ).stdout
    )  # fmt: skip
    assert used["metrics"]["chars"] == len("made by make\n")

    graph = json.loads(sweep_cli("lineage", datum, "--json", cwd=project, check=True).stdout)
    assert graph["root"] == datum
    edges = {(e["source"], e["target"], e["kind"]) for e in graph["edges"]}
    assert (made["id"], datum, "output") in edges, graph["edges"]
    assert (datum, used["id"], "input") in edges, graph["edges"]
    assert made["id"] in graph["upstream"] and used["id"] in graph["downstream"]
    tree = sweep_cli("lineage", datum, cwd=project, check=True).stdout
    assert f"execution #{made['counter']} {made['id']} make" in tree
    assert f"execution #{used['counter']} {used['id']} use" in tree


VERSION_STEP = """
- step:
    name: version
    image: sweeper-test/python:latest
    command: python3 ./version.py
"""


def test_rerun_uses_the_recorded_code_after_the_working_tree_changed(make_project: Any) -> None:
    project = make_project(VERSION_STEP, {"version.py": "print('{\"version\": 1}')\n"})
    first = json.loads(
        sweep_cli("run", "version", "--runtime", "local", "--json", cwd=project, check=True).stdout
    )
    assert first["metrics"] == {"version": 1}
    (project / "version.py").write_text("print('{\"version\": 2}')\n")
    edited = json.loads(
        sweep_cli("run", "version", "--runtime", "local", "--json", cwd=project, check=True).stdout
    )
    assert edited["metrics"] == {"version": 2}  # the edit is live for new runs
    assert edited["code_version"] != first["code_version"]

    proc = sweep_cli("rerun", first["id"], "--json", cwd=project, check=True)
    again = json.loads(proc.stdout)
    assert again["id"] not in (first["id"], edited["id"])
    assert again["metrics"] == {"version": 1}
    assert again["code_version"] == first["code_version"]
    assert again["spec"]["code_archive"] == first["spec"]["code_archive"]
    assert sweep_cli("logs", again["id"], cwd=project, check=True).stdout == '{"version": 1}\n'


# -- the config files a step reads ----------------------------------------------------------

CONFIG_STEP = """
- step:
    name: config
    image: sweeper-test/python:latest
    command: python3 ./config.py
    inputs:
      - name: data
        default: data/table.csv
"""

CONFIG_PY = """
import hashlib, json, os
config = "/valohai/config" if os.path.isdir("/valohai") else os.environ["VH_CONFIG_DIR"]
for name in ("inputs.json", "execution.json"):
    with open(os.path.join(config, name)) as f:
        print(name, f.read(), flush=True)
# the path it names is where the step reads the file
path = json.load(open(os.path.join(config, "inputs.json")))["data"]["files"][0]["path"]
print("read", hashlib.sha256(open(path, "rb").read()).hexdigest(), flush=True)
"""


@pytest.mark.parametrize("runtime", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_inputs_json_and_execution_json_as_the_step_reads_them(
    make_project: Any, runtime: str
) -> None:
    table = "a,b\n1,2\n"
    project = make_project(CONFIG_STEP, {"config.py": CONFIG_PY, "data/table.csv": table})
    proc = sweep_cli("run", "config", "--runtime", runtime, "--json", cwd=project, check=True)
    record = json.loads(proc.stdout)
    log = sweep_cli("logs", record["id"], cwd=project, check=True).stdout
    seen = dict(line.split(" ", 1) for line in log.splitlines())
    inputs = json.loads(seen["inputs.json"])
    execution = json.loads(seen["execution.json"])

    # Valohai's shape: {input name: {"files": [{name, path, size, uri, checksums}]}}
    (data_input,) = record["inputs"]
    sha = hashlib.sha256(table.encode()).hexdigest()
    assert data_input["sha256"] == sha
    base = "/valohai" if runtime == "docker" else None
    assert list(inputs) == ["data"]
    (entry,) = inputs["data"]["files"]
    assert entry["name"] == "table.csv"
    assert entry["size"] == len(table)
    assert entry["checksums"] == {"sha256": sha}
    assert entry["uri"] == data_input["uri"]
    assert entry["path"].endswith("/inputs/data/table.csv")
    assert seen["read"] == sha
    if base:
        assert entry["path"] == "/valohai/inputs/data/table.csv"
    assert execution == {
        "valohai.execution-id": record["id"],
        "valohai.execution-counter": record["counter"],
        "valohai.execution-step": "config",
        "valohai.execution-image": "sweeper-test/python:latest",
        "valohai.execution-commit": record["code_version"],
    }


# -- secret: true --------------------------------------------------------------------------

SECRET_STEP = """
- step:
    name: connect
    image: sweeper-test/python:latest
    command: python3 ./connect.py
    environment-variables:
      - name: DB_URL
        secret: true
"""

CONNECT_PY = """
import json, os
url = os.environ["DB_URL"]
print("connecting to", url, flush=True)
print(json.dumps({"seen": float(url.endswith("@db/app"))}), flush=True)
"""

DB_PASSWORD = "hunter2-Zq8xW"  # noqa: S105 - the value that must never be shown or stored
DB_URL = f"postgresql://app:{DB_PASSWORD}@db/app"


def _texts_of_the_store(store_dir: Path) -> Iterator[tuple[Path, bytes]]:
    """Every file's bytes, and each Parquet part's values as text (they may be compressed)."""
    for path in store_dir.rglob("*"):
        if not path.is_file():
            continue
        yield path, path.read_bytes()
        if path.suffix == ".parquet":
            yield path, json.dumps(pq.read_table(path).to_pylist(), default=str).encode()


def test_secret_variable_with_an_ordinary_name_is_masked_everywhere(
    make_project: Any, ray_head: str
) -> None:
    project = make_project(SECRET_STEP, {"connect.py": CONNECT_PY})
    run = sweep_cli(
        "run", "connect", "--runtime", "local", "-e", f"DB_URL={DB_URL}", "--json",
        cwd=project, check=True,
    )  # fmt: skip
    record = json.loads(run.stdout)
    assert record["metrics"] == {"seen": 1.0}  # the step got the real value
    assert record["environment"] == {"DB_URL": "****"}
    swept = sweep_cli(
        "connect", "--trials", "1", "--metric", "seen", "--runtime", "local",
        "-e", f"DB_URL={DB_URL}", "--json", "--address", ray_head, cwd=project, check=True,
    )  # fmt: skip
    sweep_id = json.loads(swept.stdout)["sweep_id"]
    assert json.loads(swept.stdout)["trials"]["complete"] == 1
    # the sweep keeps no secret value, so a resume must be given it again
    refused = sweep_cli("resume", sweep_id, "--address", ray_head, cwd=project)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith("sweep: error: "), refused.stderr
    assert f"sweep resume {sweep_id} -e DB_URL=VALUE" in refused.stderr
    resumed = sweep_cli(
        "resume", sweep_id, "-e", f"DB_URL={DB_URL}", "--json", "--address", ray_head,
        cwd=project, check=True,
    )  # fmt: skip
    assert json.loads(resumed.stdout)["trials"]["complete"] == 1

    shown = [
        run.stdout,
        run.stderr,  # the log streamed while it ran
        swept.stdout,
        swept.stderr,
        resumed.stdout,
        resumed.stderr,
        sweep_cli("show", record["id"], cwd=project, check=True).stdout,
        sweep_cli("show", record["id"], "--json", cwd=project, check=True).stdout,
        sweep_cli("logs", record["id"], cwd=project, check=True).stdout,
        sweep_cli("logs", "latest", cwd=project, check=True).stdout,
        sweep_cli("ls", "--format", "json", cwd=project, check=True).stdout,
        sweep_cli("ls", cwd=project, check=True).stdout,
    ]
    for text in shown:
        assert DB_PASSWORD not in text, text
    assert "connecting to ****" in shown[8]
    for path, data in _texts_of_the_store(project / ".sweeper"):
        assert DB_PASSWORD.encode() not in data, f"the secret is in {path}"
