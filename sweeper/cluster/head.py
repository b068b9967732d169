"""The warm local Ray of ``sweep up``: started, found, watched for idleness, stopped.

``sweep up`` starts a *keeper* process (``python -m sweeper.cluster.head``) in a session of
its own; the keeper runs ``ray start --head --block`` as its child, writes
``$SWEEPER_HOME/head.json`` (default ``~/.sweeper``, mode 0600: it holds the head's auth
token) once the head listens, and every few seconds asks whether anyone uses it. Busy means a
driver is connected (a sweep, a pipeline, a ``sweep deploy``: Ray's GCS lists each as a job
that is not dead) or Serve routes a deployment (``GET /-/routes`` of Serve's proxy is not
empty). After ``idle_s`` without either, the keeper removes ``head.json`` and stops its
process group, the head with it. ``sweep down`` stops that group at once: the keeper is its
leader, so nothing but this head is touched (not another Ray of the same user).

A command without ``--address`` joins the head only when ``head.json`` names a keeper that is
alive and a GCS port that answers within half a second; otherwise the file is stale (a killed
keeper, a reboot), is said so in one line, and the command starts its embedded Ray.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from sweeper.errors import ClusterError

#: The GCS port of the head ``sweep up`` starts (Ray's default, 6379, is left to ``ray start``).
DEFAULT_GCS_PORT = 6390
#: How long the head may be unused before it stops itself, unless ``sweep up --idle`` says.
DEFAULT_IDLE_S = 30 * 60
#: How long a command waits for a head.json head's port before calling the file stale.
PROBE_S = 0.5
#: The longest the keeper waits for the ``sweep up`` that started it to join and start Serve
#: (its idle clock starts then: a short ``--idle`` must not stop the head under it).
GRACE_S = 120.0


def home() -> Path:
    """Where ``sweep up`` keeps ``head.json`` (``$SWEEPER_HOME``, default ``~/.sweeper``)."""
    return Path(os.environ.get("SWEEPER_HOME") or "~/.sweeper").expanduser()


def head_file() -> Path:
    """``$SWEEPER_HOME/head.json``."""
    return home() / "head.json"


@dataclass(frozen=True)
class Head:
    """A head ``sweep up`` started, as its ``head.json`` says."""

    address: str
    gcs_port: int
    http_port: int
    #: The keeper's pid, which is also its process group's id.
    pid: int
    token: str
    started_at: float
    #: Seconds unused before it stops itself; None: never.
    idle_s: float | None
    #: When the keeper last saw a driver or a deployment (``started_at`` at first).
    busy_at: float

    @classmethod
    def parse(cls, data: object) -> Head | None:
        """The head ``data`` (head.json's content) describes; None when it is not one."""
        if not isinstance(data, dict):
            return None
        try:
            idle = data.get("idle_s")
            return cls(
                address=str(data["address"]),
                gcs_port=int(data["gcs_port"]),
                http_port=int(data["http_port"]),
                pid=int(data["pid"]),
                token=str(data.get("token") or ""),
                started_at=float(data.get("started_at") or 0.0),
                idle_s=None if idle is None else float(idle),
                busy_at=float(data.get("busy_at") or data.get("started_at") or 0.0),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def stale_reason(self) -> str | None:
        """Why this head cannot be joined (its keeper is gone, its port is silent), or None."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return f"its process {self.pid} is gone"
        except PermissionError:
            return f"its process {self.pid} is another user's now"
        if not self.keeper_alive():
            return f"its process {self.pid} is another program now"
        try:
            socket.create_connection(("127.0.0.1", self.gcs_port), timeout=PROBE_S).close()
        except OSError:
            return f"nothing answers at {self.address}"
        return None

    def keeper_alive(self) -> bool:
        """Whether the pid is still the keeper (not a pid reused since), where /proc tells."""
        try:
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except FileNotFoundError:
            return not Path("/proc/self").exists()  # no /proc (macOS): trust the pid
        except OSError:
            return False
        return b"sweeper.cluster.head" in cmdline

    def idle_for(self, now: float | None = None) -> float:
        """Seconds since the keeper last saw the head in use."""
        return max(0.0, (now or time.time()) - self.busy_at)


def read() -> Head | None:
    """The head ``head.json`` describes, alive or not; None without a readable file."""
    try:
        return Head.parse(json.loads(head_file().read_text()))
    except (OSError, ValueError):
        return None


def find() -> tuple[Head | None, str | None]:
    """(the live head of ``sweep up``, None) or (None, a note on why head.json was ignored)."""
    head = read()
    if head is None:
        return None, None
    reason = head.stale_reason()
    if reason is not None:
        return None, f"ignoring the stale head of `sweep up` in {head_file()} ({reason})"
    return head, None


def use_token(head: Head) -> None:
    """Let this process's Ray connect to ``head`` (a token-protected head, as Ray 2.60's is).

    Ray reads its auth mode when it is imported; when it is imported already, its cached
    settings are read anew (what Ray's own tests do to switch tokens in one process).
    """
    if not head.token or os.environ.get("RAY_AUTH_TOKEN"):
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = head.token
    if "ray._raylet" in sys.modules:
        try:
            from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

            Config.initialize("")
            AuthenticationTokenLoader.instance().reset_cache()
        except Exception:  # a Ray without them reads the environment on each connect
            pass


def start(*, gcs_port: int, http_port: int, num_cpus: int | None, idle_s: float | None) -> Head:
    """Start a keeper and its head; the head once ``head.json`` names it (ClusterError if not)."""
    for port, what in ((gcs_port, "--port"), (http_port, "--http-port")):
        if not _free(port):
            raise ClusterError(f"port {port} is in use: pick another with {what}")
    home().mkdir(parents=True, exist_ok=True)
    head_file().unlink(missing_ok=True)  # a stale one (find() said so): this start replaces it
    command = [sys.executable, "-m", "sweeper.cluster.head", f"--port={gcs_port}"]
    command += [f"--http-port={http_port}", f"--idle={idle_s or 0}"]
    if num_cpus is not None:
        command.append(f"--num-cpus={num_cpus}")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "SWEEPER_HOME": str(home())}
    with open(home() / "head.log", "ab") as log:
        keeper = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
    deadline = time.monotonic() + 120
    while True:
        head = read()
        if head is not None and head.pid == keeper.pid:
            return head
        if keeper.poll() is not None or time.monotonic() > deadline:
            stop_group(keeper.pid)
            raise ClusterError(f"`ray start --head` did not come up; see {home() / 'head.log'}")
        time.sleep(0.2)


def started(head: Head) -> None:
    """Tell the keeper that ``sweep up`` has joined its head: its idle clock starts now."""
    try:
        os.kill(head.pid, signal.SIGUSR1)
    except ProcessLookupError:
        raise ClusterError(f"the head stopped while starting; see {home() / 'head.log'}") from None


def stop_group(pid: int) -> None:
    """Stop the process group ``pid`` leads (a keeper and its head): TERM, then KILL."""
    for sig, wait_s in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


def _free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def _write(head: Head) -> None:
    """Replace head.json at once (a reader never sees half of it), readable by its owner only."""
    tmp = head_file().with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(asdict(head)) + "\n")
    os.replace(tmp, head_file())


def busy(head: Head, gcs: object) -> bool:
    """Whether a driver is connected to ``head`` or Serve routes any deployment on it."""
    jobs = gcs.get_all_job_info(  # type: ignore[attr-defined]
        skip_submission_job_info_field=True, skip_is_running_tasks_field=True, timeout=10
    )
    for job in jobs.values():
        if not job.is_dead and not job.config.ray_namespace.startswith("_ray_internal"):
            return True
    try:
        url = f"http://127.0.0.1:{head.http_port}/-/routes"
        with urllib.request.urlopen(url, timeout=5) as answer:
            return bool(json.loads(answer.read() or b"{}"))
    except (OSError, ValueError):  # Serve never started, or is stopping: nothing is served
        return False


_PORT_OPTIONS = (
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--ray-client-server-port",
    "--node-manager-port",
    "--object-manager-port",
    "--runtime-env-agent-port",
    "--metrics-export-port",
)


def _free_ports() -> list[int]:
    """Ports free now, one per option of :data:`_PORT_OPTIONS`, all held until all are found."""
    sockets = [socket.socket() for _ in _PORT_OPTIONS]
    try:
        for held in sockets:
            held.bind(("127.0.0.1", 0))
        return [held.getsockname()[1] for held in sockets]
    finally:
        for held in sockets:
            held.close()


def _ray_start(gcs_port: int, num_cpus: int | None) -> list[str]:
    command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block"]
    command += [
        f"--port={gcs_port}",
        "--node-ip-address=127.0.0.1",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={home() / 'ray'}",
        # Ray's fixed default ports would clash with any other head on the machine
        *(f"{option}={port}" for option, port in zip(_PORT_OPTIONS, _free_ports(), strict=True)),
    ]
    if num_cpus is not None:
        command.append(f"--num-cpus={num_cpus}")
    return command


def _keep(args: argparse.Namespace) -> None:
    """The keeper: start the head, publish it, stop the group once unused for ``--idle``."""
    joined = threading.Event()
    signal.signal(signal.SIGUSR1, lambda _signum, _frame: joined.set())  # see started()
    token = secrets.token_hex(32)
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    ray = subprocess.Popen(_ray_start(args.port, args.num_cpus), env=os.environ)
    while _free(args.port):
        if ray.poll() is not None:
            sys.exit(f"ray start exited with {ray.returncode}")
        time.sleep(0.2)
    now = time.time()
    head = Head(
        f"127.0.0.1:{args.port}", args.port, args.http_port, os.getpid(), token, now,
        args.idle or None, now,
    )  # fmt: skip
    _write(head)
    from ray._raylet import GcsClient  # type: ignore[attr-defined]

    gcs = GcsClient(address=head.address)
    check_s = min(5.0, max(0.5, (head.idle_s or 20.0) / 4))
    while ray.poll() is None:
        time.sleep(check_s)
        try:
            in_use = busy(head, gcs)
        except Exception:  # the GCS is stopping or too busy to answer: not proof of idleness
            in_use = True
        in_use = in_use or (not joined.is_set() and time.time() - head.started_at < GRACE_S)
        if in_use:
            head = Head(**{**asdict(head), "busy_at": time.time()})
            _write(head)
        elif head.idle_s is not None and head.idle_for() >= head.idle_s:
            print(f"unused for {head.idle_for():.0f} s: stopping", flush=True)
            break
    current = read()
    if current is not None and current.pid == head.pid:  # not a newer `sweep up`'s file
        head_file().unlink(missing_ok=True)
    # the keeper leads the group: TERM reaches the head's processes, not this one
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.killpg(os.getpgid(0), signal.SIGTERM)
    try:
        ray.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pass
    os.killpg(os.getpgid(0), signal.SIGKILL)  # what TERM left, this keeper last


def main(argv: list[str] | None = None) -> None:
    """Run a keeper (what ``sweep up`` starts; not meant to be run by hand)."""
    parser = argparse.ArgumentParser(prog="python -m sweeper.cluster.head")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--idle", type=float, default=0.0, help="seconds; 0: never")
    parser.add_argument("--num-cpus", type=int, default=None)
    _keep(parser.parse_args(argv))


if __name__ == "__main__":
    main()
