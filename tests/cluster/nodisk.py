"""A real multi-node Ray cluster whose nodes share no disk: a test bed of separate machines.

Each node has a HOME, a ``TMPDIR`` and a Ray ``--temp-dir`` of its own, under ``root``
(a short folder in /tmp: Ray's socket paths must stay below 108 characters)::

    root/head/{home,tmp,ray}       the head's (the driver's machine)
    root/nodes/wN/{home,tmp,ray}   worker wN's: its "area"

The head (``ray start --head --num-cpus=0``, so that every execution lands on a worker) and
every worker run in a mount namespace of their own (``unshare -m``). In a worker's, ``hidden``
(pytest's base temp folder: every test's project and store, the drivers' HOME and TMPDIR),
the head's folder and every other worker's area are empty tmpfs mounts; its own area is
bind-mounted back at the same path. In the head's, ``root/nodes`` is an empty tmpfs. The
``sweep`` drivers get the same view as the head: :attr:`NoDiskCluster.driver_env` puts a
``sitecustomize`` on their ``PYTHONPATH`` that moves the interpreter into a mount namespace
of its own with ``root/nodes`` hidden before any other code runs. So a worker sees the Python,
the Docker socket and its own folders, like a separate machine with the same image; nothing
the driver writes reaches a worker by disk, and nothing a worker writes reaches the driver
by disk: what a trial needs and what it makes must travel through Ray or the store.

Docker: the one daemon resolves bind-mount sources in this machine's namespace, where every
area is a real folder at the same path (the areas are bind-mounted, not copied). So a
worker's containers work, and could also mount a driver-only path, which the worker itself
cannot see; :meth:`NoDiskCluster.watch_docker` inspects every container sweeper creates and
:meth:`DockerWatch.assert_private` checks that each mounts only its own worker's area.

Ray token authentication is on (``RAY_AUTH_MODE=token``) as on a real cluster: the head's
token is made by ``ray get-auth-token --generate`` in the head's HOME and copied to
``~/.ray/auth_token`` in every worker's HOME and the drivers' HOME; no process gets it in
``RAY_AUTH_TOKEN``.

The fixture proves the isolation both ways before any test runs
(:meth:`NoDiskCluster.check_isolation`). Nodes are stopped by process group, and a node's
leftovers (steps run in sessions of their own) by its mount namespace. Ray's temp folders
are private to the cluster, so no other Ray on the machine is touched and no
``/tmp/ray/ray_current_cluster`` is written.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

#: Run as ``python -c`` (a driver of its own, with :attr:`NoDiskCluster.driver_env`): waits
#: for the nodes, then runs ``look(paths)`` as a Ray task pinned to each node and prints what
#: the driver itself and every node saw as JSON.
_PROBE = r"""
import json, os, sys, time
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

address, expected, paths = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])

def look(paths):
    node = ray._private.worker._global_node
    return {
        "exists": {p: os.path.exists(p) for p in paths},
        "tmpdir": os.environ.get("TMPDIR"),
        "home": os.environ.get("HOME"),
        "temp_dir": node.get_temp_dir_path() if node is not None else None,
        "token_in_env": "RAY_AUTH_TOKEN" in os.environ,
        "python": sys.executable,
    }

driver = look(paths)
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

remote_look = ray.remote(num_cpus=0)(look)
out = []
for node in [n for n in alive if name(n) in {"head", *expected}]:
    strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
    seen = ray.get(remote_look.options(scheduling_strategy=strategy).remote(paths), timeout=120)
    out.append({"node_id": node["NodeID"], "name": name(node), **seen})
out.append({"node_id": "", "name": "driver", **driver})
print(json.dumps(out))
"""

#: The drivers' ``sitecustomize``: before any other code runs (one thread yet, as unshare
#: needs), a mount namespace of its own in which each path of SWEEPER_NODISK_HIDE is an
#: empty tmpfs. Private propagation first, or the tmpfs would show on the host too.
_SITECUSTOMIZE = r"""
import ctypes, os

_hide = os.environ.pop("SWEEPER_NODISK_HIDE", "")
if _hide:
    _libc = ctypes.CDLL(None, use_errno=True)
    _MS_REC, _MS_PRIVATE, _CLONE_NEWNS = 0x4000, 0x40000, 0x20000

    def _check(result, what):
        if result != 0:
            raise SystemExit(f"nodisk driver: {what}: {os.strerror(ctypes.get_errno())}")

    _check(_libc.unshare(_CLONE_NEWNS), "unshare")
    _check(_libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "make / private")
    for _path in _hide.split(os.pathsep):
        _check(_libc.mount(b"tmpfs", _path.encode(), b"tmpfs", 0, None), f"hide {_path}")
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


def _folders(area: Path) -> dict[str, Path]:
    """A node's own HOME, TMPDIR and Ray temp dir, made under its area."""
    folders = {"home": area / "home", "tmp": area / "tmp", "ray": area / "ray"}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    return folders


@dataclass
class WorkerNode:
    """One worker node: its ``ray start`` process (a group leader) and private folders.

    ``tmpdir`` is its ``TMPDIR``; its HOME and Ray temp dir lie next to it in its
    :attr:`area`, which no other node and no driver can see.
    """

    name: str
    proc: subprocess.Popen[bytes]
    tmpdir: Path
    namespace: str
    node_id: str = ""

    @property
    def area(self) -> Path:
        """Everything of this node's own: its HOME, TMPDIR and Ray temp dir."""
        return self.tmpdir.parent

    @property
    def home(self) -> Path:
        """Its HOME (``~/.ray/auth_token`` holds the head's token)."""
        return self.area / "home"

    @property
    def temp_dir(self) -> Path:
        """Its Ray ``--temp-dir`` (sessions, logs, sockets, spilled objects)."""
        return self.area / "ray"

    def pids(self) -> list[int]:
        """Every live process of this node (its mount namespace is its own)."""
        return pids_in_namespace(self.namespace)


@dataclass
class NoDiskCluster:
    """A head on the driver's machine and worker nodes that share no disk with it or each other."""

    hidden: Path
    root: Path
    port: int = field(default_factory=_free_port)
    token: str = ""  # the head's, once it has made one (:meth:`start_head`)
    head: subprocess.Popen[bytes] | None = None
    workers: dict[str, WorkerNode] = field(default_factory=dict)
    head_node_id: str = ""
    dashboard_port: int | None = None

    @property
    def address(self) -> str:
        """What ``sweep ... --address`` is given."""
        return f"127.0.0.1:{self.port}"

    @property
    def dashboard_url(self) -> str:
        """The head's job server, for ``sweep submit`` and ``sweep jobs`` (``dashboard=True``)."""
        if self.dashboard_port is None:
            raise RuntimeError("this cluster's head runs no dashboard (dashboard=True)")
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def head_area(self) -> Path:
        """The head's HOME, TMPDIR and Ray temp dir (the driver's machine: drivers see it)."""
        return self.root / "head"

    @property
    def nodes_area(self) -> Path:
        """The workers' areas, one folder each; hidden from the head and the drivers."""
        return self.root / "nodes"

    @property
    def driver_home(self) -> Path:
        """The drivers' HOME, with the head's token in ``~/.ray/auth_token``."""
        return self.hidden / "driver-home"

    def _base_env(self) -> dict[str, str]:
        return {
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",  # more than one node on one host
            "RAY_AUTH_MODE": "token",  # the token itself is in each HOME's ~/.ray/auth_token
            "RAY_USAGE_STATS_ENABLED": "0",
        }

    @property
    def env(self) -> dict[str, str]:
        """What every driver that joins the cluster needs: token mode and a HOME with the token."""
        return {**self._base_env(), "HOME": str(self.driver_home)}

    @property
    def driver_env(self) -> dict[str, str]:
        """For ``sweep`` drivers: also a temp folder and a mount namespace blind to the workers."""
        tmp = self.hidden / "driver-tmp"
        tmp.mkdir(exist_ok=True)
        python_path = [str(self.root / "site"), *filter(None, [os.environ.get("PYTHONPATH")])]
        return {
            **self.env,
            "TMPDIR": str(tmp),
            "PYTHONPATH": os.pathsep.join(python_path),
            "SWEEPER_NODISK_HIDE": str(self.nodes_area),
        }

    def _node_env(self, folders: dict[str, Path]) -> dict[str, str]:
        # the venv's bin first, as after `source .venv/bin/activate`: a job's `sweep`
        venv_bin = str(Path(sys.executable).parent)
        env = {**os.environ, **self._base_env()}
        env.pop("RAY_AUTH_TOKEN", None)
        return {
            **env,
            "HOME": str(folders["home"]),
            "TMPDIR": str(folders["tmp"]),
            "PATH": os.pathsep.join([venv_bin, env.get("PATH", "")]),
        }

    def _ray_start(self, temp_dir: Path, *args: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            "--node-ip-address=127.0.0.1",
            "--disable-usage-stats",
            f"--temp-dir={temp_dir}",
            f"--dashboard-agent-listen-port={_free_port()}",
            "--block",
            *args,
        ]

    def _make_token(self, home: Path) -> None:
        """``ray get-auth-token --generate`` as the head's admin runs it, in the head's HOME."""
        proc = subprocess.run(
            [sys.executable, "-m", "ray.scripts.scripts", "get-auth-token", "--generate"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **self._base_env(), "HOME": str(home)},
        )
        token_file = home / ".ray" / "auth_token"
        if proc.returncode != 0 or not token_file.is_file():
            raise RuntimeError(f"ray get-auth-token failed:\n{proc.stdout}\n{proc.stderr}")
        self.token = token_file.read_text().strip()
        self._give_token(self.driver_home)

    def _give_token(self, home: Path) -> None:
        """The head's token in ``home/.ray/auth_token``: what an admin copies to each machine."""
        (home / ".ray").mkdir(parents=True, exist_ok=True)
        (home / ".ray" / "auth_token").write_text(self.token)
        (home / ".ray" / "auth_token").chmod(0o600)

    def start_head(self, dashboard: bool = False) -> None:
        """``ray start --head`` with no CPUs: the driver's machine runs no execution.

        ``dashboard`` also starts its job server (:attr:`dashboard_url`).
        """
        folders = _folders(self.head_area)
        self.nodes_area.mkdir(exist_ok=True)
        self._make_token(folders["home"])
        (self.root / "site").mkdir(exist_ok=True)
        (self.root / "site" / "sitecustomize.py").write_text(_SITECUSTOMIZE)
        args = [
            "--head",
            f"--port={self.port}",
            "--num-cpus=0",
            # a lost node is known in ~5 s instead of ~30 s (Ray's default)
            f"--system-config={json.dumps(FAST_NODE_DEATH)}",
            f"--ray-client-server-port={_free_port()}",
        ]
        if dashboard:
            self.dashboard_port = _free_port()
            args += [
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dashboard_port}",
            ]
        else:
            args.append("--include-dashboard=false")
        start = shlex.join(self._ray_start(folders["ray"], *args))
        hide = f"mount -t tmpfs tmpfs {shlex.quote(str(self.nodes_area))}"
        with open(self.root / "head.log", "wb") as log:
            self.head = subprocess.Popen(
                ["unshare", "-m", "bash", "-c", f"{hide} && exec {start}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._node_env(folders),
                cwd=folders["home"],
                start_new_session=True,
            )
        if not self._started("head", self.head):
            raise RuntimeError(f"the Ray head did not start:\n{self._log('head')}")

    def add_worker(self, name: str, num_cpus: int = 2) -> WorkerNode:
        """A worker node in a mount namespace of its own that sees only its own area.

        Returns once the node has joined. Ray gives a new node's raylet 30 s to register
        with the GCS; on a loaded machine that can run out, so a node that gave up is
        started again (once).
        """
        folders = _folders(self.nodes_area / name)
        self._give_token(folders["home"])
        for _ in range(2):
            worker = self._start_worker(name, num_cpus, folders)
            self.workers[name] = worker
            if self._started(name, worker.proc):
                return worker
            self.kill_worker(name)
        raise RuntimeError(f"worker {name} did not join:\n{self._log(name)}")

    def _log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")[-4000:]

    def _worker_mounts(self, area: Path) -> str:
        """The shell lines that leave a worker only its own ``area`` of the cluster's folders.

        The area is bind-mounted aside first, so that it can come back at its own path once
        every area is covered: the same path as on the host, where dockerd resolves mounts.
        """
        stage = shlex.quote(str(self.root / "stage"))
        own = shlex.quote(str(area))
        return " && ".join(
            [
                f"mount --bind {own} {stage}",
                f"mount -t tmpfs tmpfs {shlex.quote(str(self.nodes_area))}",
                f"mkdir {own}",
                f"mount --move {stage} {own}",
                f"mount -t tmpfs tmpfs {shlex.quote(str(self.head_area))}",
                f"mount -t tmpfs tmpfs {shlex.quote(str(self.hidden))}",
            ]
        )

    def _start_worker(self, name: str, num_cpus: int, folders: dict[str, Path]) -> WorkerNode:
        start = shlex.join(
            self._ray_start(
                folders["ray"],
                f"--address={self.address}",
                f"--num-cpus={num_cpus}",
                f"--resources={json.dumps({f'nodisk-{name}': 1})}",
            )
        )
        (self.root / "stage").mkdir(exist_ok=True)
        mounts = self._worker_mounts(self.nodes_area / name)
        with open(self.root / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                ["unshare", "-m", "bash", "-c", f"{mounts} && exec {start}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._node_env(folders),
                cwd="/",
                start_new_session=True,
            )
        ours = _mount_namespace(os.getpid())
        deadline = time.monotonic() + 30
        while (namespace := _mount_namespace(proc.pid)) in (ours, None):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"unshare did not start:\n{self._log(name)}")
            time.sleep(0.05)
        return WorkerNode(name=name, proc=proc, tmpdir=folders["tmp"], namespace=namespace)

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
        """What each alive node, and a driver, see of ``paths``, from a Ray task pinned to each.

        The driver's view is the entry named ``"driver"`` (its ``node_id`` is empty).
        """
        expected = [n for n, w in self.workers.items() if w.proc.poll() is None]
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE, self.address, json.dumps(expected), json.dumps(paths)],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, **self.driver_env},
        )
        if proc.returncode != 0:
            raise RuntimeError(f"the cluster probe failed:\n{proc.stdout}\n{proc.stderr}")
        nodes: list[dict[str, Any]] = json.loads(proc.stdout.strip().splitlines()[-1])
        return nodes

    def _markers(self) -> dict[str, list[Path]]:
        """A file in each place that only some can see: the driver's, the head's, each worker's."""
        markers = {
            "driver": [self.hidden / "nodisk-marker" / "written-by-the-driver.txt"],
            "head": [self.head_area / f / "nodisk-marker.txt" for f in ("home", "tmp", "ray")],
            **{
                name: [w.home / "nodisk-marker.txt", w.tmpdir / "nodisk-marker.txt"]
                + [w.temp_dir / "nodisk-marker.txt"]
                for name, w in self.workers.items()
            },
        }
        for paths in markers.values():
            for path in paths:
                path.parent.mkdir(exist_ok=True)
                path.write_text("only this machine's disk has this\n")
        return markers

    def check_isolation(self) -> None:
        """Fail unless every node is up, set up as its own machine, and blind to the others.

        Each place (the driver's files, the head's folders, each worker's HOME, TMPDIR and
        Ray temp dir) holds a file; the driver and the head (one machine) see the driver's
        and the head's only, each worker its own only. A view that sees nothing proves
        nothing, so each place must be seen where it should.
        """
        markers = self._markers()
        seen_by = {
            "driver": {"driver", "head"},
            "head": {"driver", "head"},
            **{name: {name} for name in self.workers},
        }
        nodes = self.probe([str(p) for paths in markers.values() for p in paths])
        by_name = {n["name"]: n for n in nodes}
        missing = {"head", *self.workers} - set(by_name)
        if missing:
            raise RuntimeError(f"nodes did not join: {sorted(missing)}; seen {nodes}")
        for viewer, seen in by_name.items():
            for place, paths in markers.items():
                for path in paths:
                    if seen["exists"][str(path)] != (viewer in seen_by[place]):
                        raise RuntimeError(
                            f"{viewer} {'cannot see' if viewer in seen_by[place] else 'sees'} "
                            f"{place}'s {path}: the bed is not isolated: {seen}"
                        )
            self._check_setup(viewer, seen)
        self.head_node_id = by_name["head"]["node_id"]
        for name, worker in self.workers.items():
            worker.node_id = by_name[name]["node_id"]

    def _check_setup(self, viewer: str, seen: dict[str, Any]) -> None:
        """A node has its own HOME, TMPDIR and Ray temp dir, and no token in its environment."""
        if viewer == "driver":
            folders = {"home": self.driver_home, "tmp": self.hidden / "driver-tmp"}
        elif viewer == "head":
            folders = {"home": self.head_area / "home", "tmp": self.head_area / "tmp"}
            folders["ray"] = self.head_area / "ray"
        else:
            worker = self.workers[viewer]
            folders = {"home": worker.home, "tmp": worker.tmpdir, "ray": worker.temp_dir}
        wanted = {"home": seen["home"], "tmp": seen["tmpdir"], "ray": seen["temp_dir"]}
        if any(wanted[key] != str(path) for key, path in folders.items()):
            raise RuntimeError(f"{viewer} is not set up with {folders}: {seen}")
        if seen["token_in_env"] or seen["python"] != sys.executable:
            raise RuntimeError(f"{viewer} is not set up as expected: {seen}")

    def worker_node_ids(self) -> set[str]:
        """The Ray node ids of the worker nodes (known after :meth:`check_isolation`)."""
        return {w.node_id for w in self.workers.values()}

    def worker_of(self, node_id: str) -> WorkerNode:
        """The worker node with this Ray node id."""
        (worker,) = [w for w in self.workers.values() if w.node_id == node_id]
        return worker

    @contextmanager
    def watch_docker(self, gate: str | None = None) -> Iterator[DockerWatch]:
        """Inspect every container sweeper creates meanwhile (see :class:`DockerWatch`)."""
        watch = DockerWatch(gate=gate)
        watch.start()
        try:
            yield watch
        finally:
            watch.stop()

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
            head_namespace = _mount_namespace(self.head.pid)
            _stop_group(self.head, grace_s=5)
            if head_namespace not in (None, _mount_namespace(os.getpid())):
                for pid in pids_in_namespace(head_namespace):  # a job's leftovers
                    _signal(pid, signal.SIGKILL)
        # the tmpfs mounts went with the namespaces; Ray's sockets and logs are ours alone
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class DockerWatch:
    """Every container labelled ``sweeper.execution_id`` created while it runs, inspected.

    ``mounts`` maps an execution id to the bind-mount sources of its containers, as the
    daemon resolved them. With ``gate``, the watcher then creates that file in the
    container's work folder (the source mounted at ``/valohai``): a step that waits for it
    cannot end, and its container cannot be removed, before it has been inspected.
    """

    gate: str | None = None
    mounts: dict[str, list[str]] = field(default_factory=dict)
    missed: list[str] = field(default_factory=list)
    _stream: Any = None
    _thread: threading.Thread | None = None

    def start(self) -> None:
        """Listen to the daemon's create events (from now on) in a thread of its own."""
        import docker

        client = docker.from_env()
        self._stream = client.events(
            decode=True,
            filters={"type": "container", "event": "create", "label": "sweeper.execution_id"},
        )
        self._thread = threading.Thread(target=self._watch, args=(client,), daemon=True)
        self._thread.start()

    def _watch(self, client: Any) -> None:
        import docker

        try:
            for event in self._stream:
                try:
                    container = client.api.inspect_container(event["id"])
                except docker.errors.NotFound:
                    self.missed.append(event["id"])
                    continue
                self._record(container)
        except Exception:  # the stream closed by stop()
            return

    def _record(self, container: dict[str, Any]) -> None:
        execution_id = container["Config"]["Labels"]["sweeper.execution_id"]
        sources = [m["Source"] for m in container["Mounts"] if m["Type"] == "bind"]
        self.mounts.setdefault(execution_id, []).extend(sources)
        if self.gate is not None:
            for mount in container["Mounts"]:
                if mount["Destination"] == "/valohai":
                    Path(mount["Source"], self.gate).touch()

    def stop(self) -> None:
        """Stop listening."""
        if self._stream is not None:
            self._stream.close()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def assert_private(self, cluster: NoDiskCluster, rows: Iterable[dict[str, Any]]) -> None:
        """Each execution's containers were inspected and mount its own worker's area only."""
        assert not self.missed, f"containers gone before they were inspected: {self.missed}"
        for row in rows:
            sources = self.mounts.get(row["execution_id"])
            assert sources, f"no container of {row['execution_id']} was seen: {self.mounts}"
            area = cluster.worker_of(row["ray_node"]).area
            outside = [s for s in sources if not Path(s).is_relative_to(area)]
            assert not outside, f"{row['execution_id']} on {area} mounted {outside}"


@contextmanager
def no_disk_cluster(
    hidden: Path, workers: int = 2, dashboard: bool = False
) -> Iterator[NoDiskCluster]:
    """A head (0 CPUs) and ``workers`` 2-CPU worker nodes that share no disk.

    ``dashboard`` starts the head's job server too (``sweep submit``, ``sweep jobs``).
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
        cluster.start_head(dashboard=dashboard)
        for n in range(workers):
            cluster.add_worker(f"w{n}")
        cluster.check_isolation()
        yield cluster
    finally:
        cluster.shutdown()
