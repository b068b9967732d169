"""A real multi-node Ray cluster whose worker nodes share no disk with the driver.

The head (``ray start --head --num-cpus=0``, so that every execution lands on a worker) runs
in this machine's mount namespace, as the sweep drivers do. Each worker node is started as
``unshare -m bash -c 'mount -t tmpfs tmpfs HIDDEN && exec ray start --address=... --block'``:
a private mount namespace in which ``HIDDEN`` (pytest's base temp folder, which holds every
test's project and store) is an empty tmpfs. The worker sees the Python, the Ray temp folder
of this cluster and the Docker socket, like a separate machine with the same image, and none
of the driver's files: what a trial needs must travel through Ray.

Each worker gets a private ``TMPDIR`` outside ``HIDDEN``, so that its scratch folders are
its own (never a folder the driver also uses) and yet visible to dockerd, which resolves
bind-mount sources in the host's namespace. The drivers' own ``TMPDIR`` lies inside
``HIDDEN``: nothing the driver writes to a temp folder can reach a worker by disk.

The fixture proves the isolation before any test runs (:meth:`NoDiskCluster.check_isolation`).
Nodes are stopped by process group, and a worker's leftovers (steps run in sessions of their
own) by its mount namespace. Ray's temp folder is private to the cluster (``--temp-dir``), so
no other Ray on the machine is touched and no ``/tmp/ray/ray_current_cluster`` is written.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

#: Run as ``python -c`` (a driver of its own): waits for the nodes, then runs
#: ``look(paths)`` as a Ray task pinned to each node and prints what every node saw as JSON.
_PROBE = r"""
import json, os, sys, time
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

address, expected, paths = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
ray.init(address=address, log_to_driver=False, logging_level="ERROR")

def name(node):
    names = [r[len("nodisk-"):] for r in node["Resources"] if r.startswith("nodisk-")]
    return names[0] if names else "head"

deadline = time.monotonic() + 120
while True:
    alive = [n for n in ray.nodes() if n["Alive"]]
    if set(expected) <= {name(n) for n in alive} or time.monotonic() > deadline:
        break
    time.sleep(0.5)

@ray.remote(num_cpus=0)
def look(paths):
    return {
        "exists": {p: os.path.exists(p) for p in paths},
        "tmpdir": os.environ.get("TMPDIR"),
        "python": sys.executable,
    }

out = []
for node in [n for n in alive if name(n) in {"head", *expected}]:
    strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
    seen = ray.get(look.options(scheduling_strategy=strategy).remote(paths), timeout=120)
    out.append({"node_id": node["NodeID"], "name": name(node), **seen})
print(json.dumps(out))
"""


FAST_NODE_DEATH = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 1000,
    "health_check_failure_threshold": 5,
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _stop_group(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM the process group of ``proc`` (a ``ray start --block``), SIGKILL it after."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    try:
        # the node's Ray processes are in the group (a head drains for 30 s on SIGTERM)
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def _mount_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def pids_in_namespace(namespace: str) -> list[int]:
    """Live processes in a mount namespace: a worker node's, steps that left its group too."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _mount_namespace(int(entry.name)) == namespace:
            found.append(int(entry.name))
    return found


@dataclass
class WorkerNode:
    """One worker node: its ``ray start`` process (a group leader) and private temp folder."""

    name: str
    proc: subprocess.Popen[bytes]
    tmpdir: Path
    namespace: str
    node_id: str = ""

    def pids(self) -> list[int]:
        """Every live process of this node (its mount namespace is its own)."""
        return pids_in_namespace(self.namespace)


@dataclass
class NoDiskCluster:
    """A head on this machine's disk and worker nodes that cannot see ``hidden``."""

    hidden: Path
    root: Path
    port: int = field(default_factory=_free_port)
    token: str = field(default_factory=lambda: secrets.token_hex(32))
    head: subprocess.Popen[bytes] | None = None
    workers: dict[str, WorkerNode] = field(default_factory=dict)
    head_node_id: str = ""

    @property
    def address(self) -> str:
        """What ``sweep ... --address`` is given."""
        return f"127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """The environment of the Ray processes and of every driver that joins them."""
        return {
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",  # more than one node on one host
            "RAY_AUTH_MODE": "token",  # a `ray start` head of Ray 2.60 requires a token
            "RAY_AUTH_TOKEN": self.token,
            "RAY_USAGE_STATS_ENABLED": "0",
        }

    @property
    def driver_env(self) -> dict[str, str]:
        """For ``sweep`` drivers: also a temp folder that no worker can see."""
        tmp = self.hidden / "driver-tmp"
        tmp.mkdir(exist_ok=True)
        return {**self.env, "TMPDIR": str(tmp)}

    def _ray_start(self, *args: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            "--node-ip-address=127.0.0.1",
            "--disable-usage-stats",
            f"--temp-dir={self.root / 'ray'}",
            f"--dashboard-agent-listen-port={_free_port()}",
            "--block",
            *args,
        ]

    def start_head(self) -> None:
        """``ray start --head`` with no CPUs: the driver's machine runs no execution."""
        with open(self.root / "head.log", "wb") as log:
            self.head = subprocess.Popen(
                self._ray_start(
                    "--head",
                    f"--port={self.port}",
                    "--num-cpus=0",
                    "--include-dashboard=false",
                    # a lost node is known in ~5 s instead of ~30 s (Ray's default)
                    f"--system-config={json.dumps(FAST_NODE_DEATH)}",
                    f"--ray-client-server-port={_free_port()}",
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,
            )
        if not self._started("head", self.head):
            raise RuntimeError(f"the Ray head did not start:\n{self._log('head')}")

    def add_worker(self, name: str, num_cpus: int = 2) -> WorkerNode:
        """A worker node in a mount namespace of its own, with ``hidden`` an empty tmpfs.

        Returns once the node has joined. Ray gives a new node's raylet 30 s to register
        with the GCS; on a loaded machine that can run out, so a node that gave up is
        started again (once).
        """
        tmpdir = self.root / name / "tmp"
        tmpdir.mkdir(parents=True)
        for _ in range(2):
            worker = self._start_worker(name, num_cpus, tmpdir)
            self.workers[name] = worker
            if self._started(name, worker.proc):
                return worker
            self.kill_worker(name)
        raise RuntimeError(f"worker {name} did not join:\n{self._log(name)}")

    def _log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")[-4000:]

    def _start_worker(self, name: str, num_cpus: int, tmpdir: Path) -> WorkerNode:
        start = shlex.join(
            self._ray_start(
                f"--address={self.address}",
                f"--num-cpus={num_cpus}",
                f"--resources={json.dumps({f'nodisk-{name}': 1})}",
            )
        )
        mount = f"mount -t tmpfs tmpfs {shlex.quote(str(self.hidden))}"
        with open(self.root / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                ["unshare", "-m", "bash", "-c", f"{mount} && exec {start}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env, "TMPDIR": str(tmpdir)},
                start_new_session=True,
            )
        ours = _mount_namespace(os.getpid())
        deadline = time.monotonic() + 30
        while (namespace := _mount_namespace(proc.pid)) in (ours, None):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"unshare did not start:\n{self._log(name)}")
            time.sleep(0.05)
        return WorkerNode(name=name, proc=proc, tmpdir=tmpdir, namespace=namespace)

    def _started(self, name: str, proc: subprocess.Popen[bytes], timeout_s: float = 120) -> bool:
        """Wait for ``ray start`` to say the node runs (it exits when it gave up)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if "Ray runtime started" in self._log(name):
                return True
            if proc.poll() is not None:
                return False
            time.sleep(0.2)
        return False

    def probe(self, paths: list[str]) -> list[dict[str, Any]]:
        """What each alive node sees of ``paths``, from a Ray task pinned to that node."""
        expected = [n for n, w in self.workers.items() if w.proc.poll() is None]
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE, self.address, json.dumps(expected), json.dumps(paths)],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, **self.env},
        )
        if proc.returncode != 0:
            raise RuntimeError(f"the cluster probe failed:\n{proc.stdout}\n{proc.stderr}")
        nodes: list[dict[str, Any]] = json.loads(proc.stdout.strip().splitlines()[-1])
        return nodes

    def check_isolation(self) -> None:
        """Fail unless every worker is up and blind to a file the driver just wrote.

        The head (the driver's machine) must see the same file, or the probe proves nothing.
        """
        marker = self.hidden / "nodisk-marker" / "written-by-the-driver.txt"
        marker.parent.mkdir(exist_ok=True)
        marker.write_text("only the driver's disk has this\n")
        nodes = self.probe([str(marker), str(self.hidden), sys.executable])
        by_name = {n["name"]: n for n in nodes}
        missing = set(self.workers) - set(by_name)
        if missing or "head" not in by_name:
            raise RuntimeError(f"nodes did not join: {sorted(missing)}; seen {nodes}")
        if not by_name["head"]["exists"][str(marker)]:
            raise RuntimeError(f"the head cannot see the driver's file {marker}: {nodes}")
        self.head_node_id = by_name["head"]["node_id"]
        for name, worker in self.workers.items():
            seen = by_name[name]
            if seen["exists"][str(marker)] or not seen["exists"][str(self.hidden)]:
                raise RuntimeError(f"worker {name} shares the driver's disk: {seen}")
            if not seen["exists"][sys.executable] or seen["tmpdir"] != str(worker.tmpdir):
                raise RuntimeError(f"worker {name} is not set up as expected: {seen}")
            worker.node_id = seen["node_id"]

    def worker_node_ids(self) -> set[str]:
        """The Ray node ids of the worker nodes (known after :meth:`check_isolation`)."""
        return {w.node_id for w in self.workers.values()}

    def kill_worker(self, name: str) -> None:
        """Stop every process of a worker node at once: a machine that is switched off.

        All are frozen (SIGSTOP) before any is killed, so that none of them sees another
        die and reports it, as a process on a dead machine could not.
        """
        worker = self.workers[name]
        frozen: set[int] = set()
        while pids := set(worker.pids()) - frozen:  # one may have started another meanwhile
            for pid in pids:
                _signal(pid, signal.SIGSTOP)
            frozen |= pids
        for pid in frozen:
            _signal(pid, signal.SIGKILL)
        worker.proc.wait(timeout=30)

    def shutdown(self) -> None:
        """Stop every node this cluster started (by process group) and remove its files."""
        for worker in self.workers.values():
            _stop_group(worker.proc, grace_s=5)
            # steps run in sessions of their own: whatever is left in the namespace is ours
            for pid in worker.pids():
                _signal(pid, signal.SIGKILL)
        if self.head is not None:
            _stop_group(self.head, grace_s=5)
        # the tmpfs mounts went with the namespaces; Ray's sockets and logs are ours alone
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def no_disk_cluster(hidden: Path, workers: int = 2) -> Iterator[NoDiskCluster]:
    """A head (0 CPUs) and ``workers`` 2-CPU worker nodes that cannot see ``hidden``.

    Fails (not skips) without root or unshare(1): the tests need a real private disk.
    """
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.fail("a no-shared-disk cluster needs root and unshare(1) (util-linux)")
    hidden = hidden.resolve()
    # short: Ray's socket paths under it must stay below 108 characters
    root = Path(tempfile.mkdtemp(prefix="sweeper-nodisk-", dir="/tmp"))
    if root.is_relative_to(hidden) or Path(sys.executable).is_relative_to(hidden):
        pytest.fail(f"{root} and {sys.executable} must lie outside the hidden {hidden}")
    cluster = NoDiskCluster(hidden=hidden, root=root)
    try:
        cluster.start_head()
        for n in range(workers):
            cluster.add_worker(f"w{n}")
        cluster.check_isolation()
        yield cluster
    finally:
        cluster.shutdown()
