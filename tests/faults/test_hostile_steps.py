"""Steps that attack what runs them: metric lines deep enough to break a recursive walker,
processes that leave the step's session to outlive it, outputs that are no files at all.

Each ends, at worst, in a clear note on that one execution (a dropped metric, a skipped
output, a killed leftover), never in a crash, lost metrics or a process left running.
Everything goes through the real ``sweep`` command, a real store and real processes; the
cases that depend on where the step runs also go through a sweep (long-lived Ray actors)
and Docker.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from sweeper.store import Store
from tests.conftest import run_main, sweep_cli
from tests.faults.conftest import containers_left, records

pytestmark = [pytest.mark.faults]

STEPS = """
- step:
    name: deep
    image: sweeper-test/python:latest
    command: python3 ./deep.py {parameters}
    parameters:
      - name: x
        type: float
        min: 0
        max: 1
        default: 0.5
- step:
    name: escape
    image: sweeper-test/python:latest
    command: python3 ./escape.py {parameters}
    parameters:
      - name: pids
        type: string
        default: /tmp
      - name: x
        type: float
        min: 0
        max: 1
        default: 0.5
- step:
    name: odd-outputs
    image: sweeper-test/python:latest
    command: python3 ./odd_outputs.py
"""

DEEP_PY = r"""
import argparse, json
p = argparse.ArgumentParser()
p.add_argument("--x", type=float)
a = p.parse_args()
print(json.dumps({"loss": 1.0, "acc": 0.9}), flush=True)
print('{"loss": NaN, "acc": NaN, "diverged": Infinity}', flush=True)
print('{"deep": ' + "[" * 500 + "]" * 500 + "}", flush=True)
print("[" * 500 + "]" * 500, flush=True)  # not an object: an ordinary log line
print(json.dumps({"loss": 0.25, "x": a.x}), flush=True)
"""

# Three ways out of the step's session, each writing its pid to <pids>/<execution id>/:
# a Popen in a new session that handles SIGTERM (and notes it got one), a daemon that
# forks twice and ignores SIGTERM, and ``nohup setsid ... &`` from a shell; and a child in
# a new session that ends at once and is never waited for.
ESCAPE_PY = r"""
import argparse, json, os, subprocess, sys, time
p = argparse.ArgumentParser()
p.add_argument("--pids")
p.add_argument("--x", type=float)
a = p.parse_args()
folder = os.path.join(a.pids, os.environ["VH_EXECUTION_ID"])
os.makedirs(folder, exist_ok=True)

def note(name, text):
    with open(os.path.join(folder, "." + name), "w") as handle:
        handle.write(text)
    os.replace(os.path.join(folder, "." + name), os.path.join(folder, name))

CATCHER = '''
import os, signal, sys, time
folder = sys.argv[1]
def on_term(*_):
    open(os.path.join(folder, "term-received"), "w").close()
    os._exit(0)
signal.signal(signal.SIGTERM, on_term)
open(os.path.join(folder, ".catcher"), "w").write(str(os.getpid()))
os.replace(os.path.join(folder, ".catcher"), os.path.join(folder, "catcher"))
while True:
    time.sleep(0.1)
'''
subprocess.Popen([sys.executable, "-c", CATCHER, folder], start_new_session=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        import signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        note("daemon", str(os.getpid()))
        while True:
            time.sleep(0.1)
    os._exit(0)

subprocess.run(
    ['nohup setsid sleep 300 > /dev/null 2>&1 & echo $! > "$0/.nohup"; mv "$0/.nohup" "$0/nohup"',
     folder],
    shell=True, check=True,
)
deadline = time.monotonic() + 60
while not all(os.path.exists(os.path.join(folder, n)) for n in ("catcher", "daemon", "nohup")):
    assert time.monotonic() < deadline, os.listdir(folder)
    time.sleep(0.02)
# Fire and forget in a new session, never waited for: a zombie by the time the step ends.
os.posix_spawnp("true", ["true"], os.environ, setsid=True)
time.sleep(0.2)
print(json.dumps({"loss": a.x}), flush=True)
"""

ODD_OUTPUTS_PY = r"""
import os, socket
out = os.environ["VH_OUTPUTS_DIR"]
with open(os.path.join(out, "model.bin"), "w") as handle:
    handle.write("weights")
os.symlink("/etc/hostname", os.path.join(out, "hostname-link"))
os.symlink("../../../../../../../../etc", os.path.join(out, "etc-link"))
os.mkfifo(os.path.join(out, "progress.fifo"))
os.chdir(out)  # a socket's path must be short: bind it by its relative name
socket.socket(socket.AF_UNIX).bind("control.sock")
print("wrote outputs", flush=True)
"""


@pytest.fixture
def project(make_project) -> Path:
    return make_project(
        STEPS, {"deep.py": DEEP_PY, "escape.py": ESCAPE_PY, "odd_outputs.py": ODD_OUTPUTS_PY}
    )


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_dead(pids: list[int], timeout: float = 30.0) -> list[int]:
    """The pids still alive after ``timeout`` (a signal takes a moment to land)."""
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def _escaped(folder: Path) -> list[int]:
    return [int((folder / name).read_text()) for name in ("catcher", "daemon", "nohup")]


def _zombie_children() -> list[int]:
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == me:
            found.append(int(entry.name))
    return found


def _check_deep(record: dict[str, Any], store: Store) -> None:
    assert record["status"] == "complete", record
    # The real metric printed after the deep line is kept; a NaN never hides a number.
    assert record["metrics"]["loss"] == 0.25
    assert record["metrics"]["acc"] == 0.9
    assert record["metrics"]["diverged"] == "inf"
    assert "deep" not in record["metrics"]
    assert record["metrics_dropped"] == 1
    rows = [
        r for r in store.read_dataset("executions").to_pylist() if r["execution_id"] == record["id"]
    ]
    assert rows and rows[0]["metric.loss"] == 0.25 and rows[0]["metric.acc"] == 0.9
    assert rows[0]["metrics_dropped"] == 1
    events = [
        m for m in store.read_dataset("metrics").to_pylist() if m["execution_id"] == record["id"]
    ]
    # The events keep what was printed, NaN included (as text, never as a number).
    assert [(m["value"], m["value_json"]) for m in events if m["key"] == "acc"] == [
        (0.9, "0.9"),
        (None, '"nan"'),
    ]


# --------------------------------------------------------------------------- metric lines


def test_a_deeply_nested_metric_line_is_dropped_not_a_crash(project: Path) -> None:
    proc = sweep_cli("run", "deep", "--runtime", "local", "--json", cwd=project, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "RecursionError" not in proc.stderr
    record = json.loads(proc.stdout)
    _check_deep(record, Store.open(project / ".sweeper"))
    shown = sweep_cli("show", "latest", cwd=project, check=True)
    assert "0.25" in shown.stdout


@pytest.mark.ray
def test_hostile_steps_in_a_sweep(project: Path, ray_head: str, tmp_path: Path) -> None:
    # Trials run in long-lived Ray actors: events cross Ray, processes outlive nothing.
    pids = tmp_path / "pids"
    common = ["--parallel", "1", "--metric", "loss", "--runtime", "local", "--address", ray_head]
    deep = sweep_cli("deep", "--trials", "2", *common, cwd=project, timeout=300)
    assert deep.returncode == 0, deep.stderr
    escape = sweep_cli(
        "escape", "--trials", "2", "-p", f"pids={pids}", *common, cwd=project, timeout=300
    )
    assert escape.returncode == 0, escape.stderr
    store = Store.open(project / ".sweeper")
    by_step: dict[str, list[dict[str, Any]]] = {}
    for record in records(project / ".sweeper"):
        by_step.setdefault(record["step"], []).append(record)
    assert len(by_step["deep"]) == 2 and len(by_step["escape"]) == 2
    for record in by_step["deep"]:
        _check_deep(record, store)
    for record in by_step["escape"]:
        assert record["status"] == "complete", record
        folder = pids / record["id"]
        assert _wait_dead(_escaped(folder)) == []
        assert (folder / "term-received").exists()


# --------------------------------------------------------------------------- processes


def test_processes_that_leave_the_session_end_with_the_run(project: Path, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    proc = sweep_cli(
        "run", "escape", "--runtime", "local", "-p", f"pids={pids}", "--json",
        cwd=project, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["status"] == "complete", record
    folder = pids / record["id"]
    escaped = _escaped(folder)
    # Ended by the run itself, not by sweep's exit: the daemon ignores SIGTERM and its
    # parent is gone, so only the run's SIGKILL after the grace period ends it.
    assert _wait_dead(escaped) == []
    assert (folder / "term-received").exists()  # SIGTERM first, as a stop does


def test_a_long_lived_process_keeps_its_own_children_and_no_zombies(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # ``sweep run`` in this process, as a Ray actor runs it: its other children are spared.
    sibling = subprocess.Popen(["sleep", "120"], start_new_session=True)
    zombies_before = set(_zombie_children())  # left by earlier tests in this process
    try:
        pids = tmp_path / "pids"
        for _ in range(2):
            code, out, err = run_main(
                ["run", "escape", "--runtime", "local", "-p", f"pids={pids}", "--json",
                 "-f", str(project / "valohai.yaml")],
                capsys,
            )  # fmt: skip
            assert code == 0, err
            record = json.loads(out)
            assert _wait_dead(_escaped(pids / record["id"])) == []
            assert set(_zombie_children()) <= zombies_before
        assert sibling.poll() is None, "a process that is not the step's was killed"
    finally:
        sibling.kill()
        sibling.wait()


@pytest.mark.docker
def test_docker_ends_processes_that_leave_the_session(project: Path) -> None:
    # The pids are the container's own: its removal is what ends them.
    proc = sweep_cli(
        "run", "escape", "--runtime", "docker", "-p", "pids=/valohai/outputs/pids", "--json",
        cwd=project, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["status"] == "complete", record
    assert {o["path"] for o in record["outputs"]} >= {
        f"pids/{record['id']}/{name}" for name in ("catcher", "daemon", "nohup")
    }
    assert containers_left(f"sweeper.execution_id={record['id']}") == []


# --------------------------------------------------------------------------- outputs


def test_outputs_that_are_not_files_are_reported(project: Path) -> None:
    proc = sweep_cli("run", "odd-outputs", "--runtime", "local", "--json", cwd=project, timeout=120)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert [o["path"] for o in record["outputs"]] == ["model.bin"]
    skipped = {item["path"]: item["reason"] for item in record["outputs_skipped"]}
    assert skipped == {
        "control.sock": "a socket, not a regular file",
        "etc-link": "it points outside the outputs folder",
        "hostname-link": "it points outside the outputs folder",
        "progress.fifo": "a FIFO, not a regular file",
    }
    log = (project / ".sweeper" / "executions" / record["id"] / "logs.txt").read_text()
    for path, reason in skipped.items():
        assert f"sweeper: output {path} refused: {reason}" in log
    row = Store.open(project / ".sweeper").read_dataset("executions").to_pylist()[0]
    assert json.loads(row["outputs_skipped"]) == record["outputs_skipped"]
    shown = sweep_cli("show", "latest", cwd=project, check=True).stdout
    assert "skipped: a FIFO, not a regular file" in shown
    plain = sweep_cli("run", "odd-outputs", "--runtime", "local", cwd=project, check=True)
    assert "output skipped: progress.fifo (a FIFO, not a regular file)" in plain.stderr
