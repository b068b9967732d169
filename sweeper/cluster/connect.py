"""Starting an embedded Ray or joining an existing cluster, with clear errors."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from sweeper.errors import ClusterError


@dataclass(frozen=True)
class ClusterInfo:
    """What the cluster offers: the largest node's resources decide what one trial may ask."""

    address: str
    embedded: bool
    nodes: list[dict[str, float]] = field(default_factory=list)

    def largest(self, resource: str) -> float:
        """The most of ``resource`` (``CPU``, ``GPU``) any single alive node has."""
        return max((n.get(resource, 0.0) for n in self.nodes), default=0.0)

    def check_fits(self, cpus: float, gpus: float, memory_mb: float | None = None) -> None:
        """Fail fast when no node could ever hold one trial (instead of waiting forever)."""
        if cpus > self.largest("CPU"):
            raise ClusterError(
                f"a trial asks for {cpus:g} CPUs but the largest node of the cluster at "
                f"{self.address} has {self.largest('CPU'):g}: lower --cpus-per-trial or "
                "the step's resources.cpu, or add a bigger node"
            )
        if gpus > self.largest("GPU"):
            raise ClusterError(
                f"a trial asks for {gpus:g} GPUs but the largest node of the cluster at "
                f"{self.address} has {self.largest('GPU'):g}: lower --gpus-per-trial or the "
                "step's nvidia.com/gpu device count, or add a GPU node"
            )


def _nodes() -> list[dict[str, float]]:
    import ray

    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]


def _probe(address: str, timeout_s: float = 10.0) -> None:
    """Fail at once when nothing listens at a ``host:port`` address.

    Ray retries an unreachable GCS for many minutes (about 40 s per attempt, with a warning
    line each time) before it gives up; a closed port or a wrong host is known in a moment.
    ``auto`` and ``ray://`` addresses are left to Ray, which resolves them itself.
    """
    host, sep, port = address.rpartition(":")
    if "://" in address or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ClusterError(f"nothing answers at {address} ({exc.strerror or exc})") from None


#: ``0``: never join a running head without ``--address``; ``1``: also a plain ``ray start
#: --head``; unset: the head of ``sweep up`` only.
REUSE_ENV = "SWEEPER_REUSE_RAY"
#: What ``--address`` (or ``RAY_ADDRESS``) says to always start an embedded Ray.
LOCAL = "local"


def _reuse() -> str:
    """``off``, ``up`` (the head of ``sweep up``, the default) or ``any`` (``ray start`` too)."""
    value = os.environ.get(REUSE_ENV, "").strip().lower()
    if value in ("0", "false", "no", "off"):
        return "off"
    return "any" if value in ("1", "true", "yes", "on") else "up"


_notes: list[str] = []


def _say(text: str) -> None:
    """Keep a line for :func:`say_notes`: which Ray a command uses is the user's concern."""
    with _lock:
        _notes.append(text)


def say_notes() -> None:
    """Print the lines kept about which Ray is used, once the work is known to start.

    Ray starts in the background while the command still checks its input (see
    :func:`connect_in_background`); saying which Ray it uses only once the work starts keeps
    a refused input to its one ``sweep: error:`` paragraph.
    """
    with _lock:
        lines, _notes[:] = list(_notes), []
    for line in lines:
        print(f"sweep: {line}", file=sys.stderr, flush=True)


def running_head(address_file: str | None = None) -> str | None:
    """The address of a Ray head started with ``ray start --head`` on this machine, if alive.

    ``ray start`` writes its address to ``/tmp/ray/ray_current_cluster``, which a plain
    ``ray.init()`` joins too. Only a file this user owns counts (not another user's head on
    a shared machine), and only when its GCS port answers at once: a killed head leaves the
    file behind, and that must cost a moment, not a hang. Opt-in with ``SWEEPER_REUSE_RAY=1``:
    a port that answers is not proof of a head that can be joined (a stale file whose port
    answered stalled a sweep for a minute in Ray's reconnect loop), which is why the head of
    ``sweep up`` (its keeper's pid is checked too) is the one joined by default.
    ``address_file`` replaces Ray's file (for tests).
    """
    if _reuse() != "any":
        return None
    try:
        from ray._common.utils import get_ray_address_file

        path = address_file or get_ray_address_file(None)
        if os.stat(path).st_uid != os.getuid():
            return None
        with open(path, encoding="utf-8") as handle:
            address = handle.read().strip()
    except Exception:  # no file, or a Ray without it: nothing to join
        return None
    if not address:
        return None
    try:
        _probe(address, timeout_s=0.5)
    except ClusterError:
        return None  # a stale file of a head that is gone
    return address


class _Start:
    """A :func:`connect` running in a thread of its own, begun by :func:`connect_in_background`.

    The thread stays alive (parked) after Ray is up, for as long as the process or until
    :func:`shutdown`: Ray starts its processes with ``PR_SET_PDEATHSIG``, which kills them
    when the *thread* that started them ends, not the process.
    """

    def __init__(self, address: str | None) -> None:
        self.address = address
        self.done = threading.Event()
        self.release = threading.Event()
        self.result: ClusterInfo | None = None
        self.error: BaseException | None = None
        # daemon: an error that ends the run while Ray still starts must not hold the exit
        # (the processes go with the process, as on a kill -9 of the driver)
        self.thread = threading.Thread(target=self._run, name="sweeper-ray-start", daemon=True)

    def _run(self) -> None:
        try:
            self.result = _connect(self.address)
        except BaseException as exc:  # handed to the caller of connect(), in its thread
            self.error = exc
        finally:
            self.done.set()
        self.release.wait()

    def wait(self) -> ClusterInfo:
        """The cluster, once Ray is up; the start's own error (a ClusterError) otherwise."""
        self.done.wait()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


_started: _Start | None = None
_lock = threading.RLock()


def _pending() -> _Start | None:
    """The background start, unless the Ray it started was shut down since (``ray.shutdown()``)."""
    import ray

    with _lock:
        started = _started
        stopped = started is not None and started.done.is_set() and started.error is None
        if started is not None and stopped and not ray.is_initialized():
            _forget(started)
            return None
        return started


def _forget(started: _Start) -> None:
    """Drop ``started`` (stopped, or its error reported) and let its parked thread end."""
    global _started
    with _lock:
        if _started is started:
            _started = None
    started.release.set()


def connect_in_background(address: str | None = None) -> None:
    """Begin :func:`connect` of ``address`` in a thread; the next ``connect()`` waits for it.

    Ray's start-up takes seconds, much of them spent waiting for its own processes: a sweep
    starts it here and meanwhile imports its engine, builds its search space, snapshots the
    code and opens its store. Does nothing when Ray is up or a start is already under way,
    nor for a ``ray://`` address (a Ray Client connection belongs to the thread that made
    it). A failed start raises its error from the ``connect()`` that waits for it, once.
    """
    global _started
    import ray

    if "://" in (address or os.environ.get("RAY_ADDRESS") or ""):
        return
    with _lock:
        if _pending() is not None or ray.is_initialized():
            return
        if threading.current_thread() is threading.main_thread():
            # what ray.init does when called from the main thread (it cannot from another):
            # SIGTERM exits through atexit, whose ray.shutdown stops the embedded Ray
            signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(signum))
        _started = _Start(address)
        _started.thread.start()


def connect(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    runtime_env: dict[str, Any] | None = None,
) -> ClusterInfo:
    """Join ``address`` (``auto``, ``host:port``, ``ray://host:port``) or start a local Ray.

    With neither ``address`` nor ``RAY_ADDRESS``, the warm head of ``sweep up`` is joined
    when it is up (Ray's start-up, seconds, is then saved; ``SWEEPER_REUSE_RAY=0`` opts
    out, ``=1`` also joins a plain ``ray start --head``, see :func:`running_head`), else an
    embedded Ray is started on loopback, sized to this machine, which never joins a stale
    cluster left by a killed process. One line on stderr says which Ray is used. ``address="local"`` always
    starts the embedded one. A start begun by :func:`connect_in_background` is waited for
    (and its error raised here); when it was for another address, the Ray it started is
    used, as any Ray already initialized in this process is.
    """
    started = _pending()
    if started is not None:
        same = (started.address, num_cpus, num_gpus, runtime_env) == (address, None, None, None)
        try:
            info = started.wait()
        except Exception:
            _forget(started)  # its error is reported once: the next start tries anew
            if same:
                raise
        else:
            if same:
                return info
    return _connect(address, num_cpus=num_cpus, num_gpus=num_gpus, runtime_env=runtime_env)


def _connect(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    runtime_env: dict[str, Any] | None = None,
) -> ClusterInfo:
    import ray

    if ray.is_initialized():
        return ClusterInfo(address=address or "local", embedded=address is None, nodes=_nodes())
    address = address or os.environ.get("RAY_ADDRESS") or None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    options: dict[str, Any] = {
        # ERROR: Ray's start-up notices (token auth, dashboard) are not the user's concern
        "logging_level": logging.ERROR,
        "log_to_driver": False,
        "configure_logging": True,
        "runtime_env": runtime_env,
    }
    if address is None and num_cpus is None and num_gpus is None:
        joined = _join_running_head(options)
        if joined is not None:
            return joined
    if address is None or address == LOCAL:
        _say("starting an embedded Ray for this command (`sweep up` keeps one warm)")
        return _start_local(num_cpus, num_gpus, options)
    _say(f"using the Ray cluster at {address}")
    try:
        _probe(address)
        ray.init(address=address, **options)
    except Exception as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClusterError(
            f"could not reach the Ray cluster at {address}: {message}. Check that the head is "
            "running (`ray status`), that the address is right, and for a token-protected "
            "head that RAY_AUTH_MODE=token is set; or leave out --address to run on an "
            "embedded local Ray"
        ) from None
    return ClusterInfo(address=address, embedded=False, nodes=_nodes())


def _join_running_head(options: dict[str, Any]) -> ClusterInfo | None:
    """The warm head of ``sweep up`` (else, with ``SWEEPER_REUSE_RAY=1``, a ``ray start``
    head), joined; None when there is none that can run anything (a 0-CPU head, say), or it
    cannot be joined after all."""
    from sweeper.cluster import head as heads

    if _reuse() == "off":
        return None
    warm, note = heads.find()
    if note is not None:
        _say(note)
    if warm is not None:
        heads.use_token(warm)
        joined = _join(warm.address, options)
        if joined is not None:
            _say(f"using the warm Ray of `sweep up` at {warm.address} (`sweep down` stops it)")
            return joined
    plain = running_head()
    if plain is not None:
        joined = _join(plain, options)
        if joined is not None:
            _say(f"using the Ray of `ray start --head` at {plain} ({REUSE_ENV}=1)")
        return joined
    return None


def _join(address: str, options: dict[str, Any]) -> ClusterInfo | None:
    import ray

    try:
        ray.init(address=address, **options)
        joined = ClusterInfo(address=address, embedded=False, nodes=_nodes())
        if joined.largest("CPU") > 0:
            return joined
    except Exception:  # not a Ray we can join after all
        pass
    ray.shutdown()
    return None


def _start_local(
    num_cpus: int | None, num_gpus: int | None, options: dict[str, Any]
) -> ClusterInfo:
    """An embedded Ray on loopback, sized to this machine unless told otherwise."""
    import ray

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    for attempt in (1, 2):  # a loaded machine can time out starting Ray once
        try:
            ray.init(
                address="local",
                num_cpus=num_cpus,
                num_gpus=num_gpus,
                include_dashboard=False,
                **options,
            )
            break
        except Exception as exc:
            ray.shutdown()
            if attempt == 2:
                raise ClusterError(f"could not start a local Ray: {exc}") from None
    return ClusterInfo(address=LOCAL, embedded=True, nodes=_nodes())


def shutdown() -> None:
    """Disconnect from (and, when embedded, stop) Ray; a start under way is waited for first."""
    import ray

    with _lock:
        started = _started
    if started is not None:
        started.done.wait()
    if ray.is_initialized():
        ray.shutdown()
    if started is not None:
        _forget(started)  # its processes are stopped: the parked thread may end
