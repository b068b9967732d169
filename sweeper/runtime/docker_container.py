"""One container's life for :class:`~sweeper.runtime.docker.DockerRuntime`: create, attach,
start, stream the output, enforce the limits and learn how it ended.

:mod:`sweeper.runtime.docker` owns the daemon connection, the images and the container's
options; this module runs one container made from those options.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import docker.errors
import requests.exceptions

from sweeper.record import FailureKind
from sweeper.runtime.base import (
    CRASHED,
    ERROR,
    STOPPED,
    RunRequest,
    Verdict,
    exit_failure,
    format_seconds,
    utcnow,
)
from sweeper.runtime.docker_network import NetworkHolder
from sweeper.runtime.output import LineSplitter

#: A label unique to one run, to find a container whose creation was interrupted.
RUN_LABEL = "sweeper.run"
#: The start of the line the step's shell prints as it exits: the run's token, its exit
#: status, the container's OOM kill count, CPU time (ns) and peak memory (bytes) ("-"
#: where the cgroup does not tell).
EXIT_MARKER = "sweeper-exit-"
#: Exit-trap lines that set ``c`` to the container cgroup's CPU time (ns) and ``m`` to its
#: memory high-water mark (bytes; page cache included, as the cgroup counts it), cgroup v2
#: else v1, "-" where neither has it. Read by the step's shell as it exits: every command
#: of the step has ended by then, and the daemon removes the container right after.
USAGE_LINES = (
    "c=-",
    "m=-",
    "if [ -r /sys/fs/cgroup/cpu.stat ]; then while read -r k v; do "
    'if [ "$k" = usage_usec ]; then c="${v}000"; fi; done < /sys/fs/cgroup/cpu.stat; '
    "elif [ -r /sys/fs/cgroup/cpuacct/cpuacct.usage ]; then "
    "read -r c < /sys/fs/cgroup/cpuacct/cpuacct.usage || c=-; fi",
    "for f in /sys/fs/cgroup/memory.peak /sys/fs/cgroup/memory/memory.max_usage_in_bytes; "
    'do if [ -r "$f" ]; then read -r m < "$f" || m=-; break; fi; done',
)
STOP_CHECK_S = 0.05
#: Output chunks read ahead of the line handling (each as the daemon sent it).
CHUNKS_QUEUED = 64

DOCKER_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)
_END = object()

#: The keyword arguments of ``containers.create`` for a run, given its token and the network
#: holder it joins (None: a network of its own).
ContainerOptions = Callable[[str, NetworkHolder | None], dict[str, Any]]


@dataclass(eq=False)
class ContainerRun:
    """One container's life: create, start, stream, enforce limits, learn how it ended.

    The exit wait and the output stream are both opened before the start, as ``docker run``
    does: the daemon removes the container (``auto_remove``) right after it exits, so a
    request sent after that would find nothing. ``options`` gives the container's
    ``containers.create`` arguments; a stop or a limit is the stop signal, then SIGKILL
    ``stop_grace_s`` later; the daemon has ``api_timeout_s`` to report the exit.
    """

    client: Any
    request: RunRequest
    options: ContainerOptions
    on_output: Callable[[str], None]
    stop: threading.Event
    #: The network holder the container joins (None: a network of its own).
    network: NetworkHolder | None = None
    stop_grace_s: float = 5.0
    api_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        self.splitter = LineSplitter(self._line)
        self.token = uuid.uuid4().hex
        self.exit_prefix = f"{EXIT_MARKER}{self.token} "
        self.container: Any = None
        self.creating = False
        self.stream: Any = None
        self.exit_wait: _ExitWait | None = None
        self.reader: threading.Thread | None = None
        # Bounded: a step that floods its output waits for us (the daemon's attach stream
        # passes the back-pressure on) instead of piling up in our memory.
        self.chunks: queue.Queue[object] = queue.Queue(maxsize=CHUNKS_QUEUED)
        self.started_at: datetime | None = None
        self.verdict: Verdict | None = None
        #: What the step's shell printed as it exited (None: it printed nothing).
        self.shell_exit: ShellExit | None = None
        self.held_blank = False
        self.exited = False

    def run(self) -> tuple[Verdict | None, int | None]:
        """Run the container to its end: how it ended (None: complete) and its exit code."""
        try:
            self._launch()
        except docker.errors.APIError:
            if self.network is None or self.network.alive():
                raise
            # Its network holder is gone (removed from outside): a network of its own.
            self.network = None
            self._close_streams()
            self._remove()
            self.container = None
            self._launch()
        self.reader = threading.Thread(
            target=_pump, args=(self.stream, self.chunks), name="sweeper-docker-logs", daemon=True
        )
        self.reader.start()
        self._supervise(self.chunks)
        return self._outcome()

    def _launch(self) -> None:
        self.creating = True
        self.container = self.client.containers.create(**self.options(self.token, self.network))
        self.creating = False
        self.exit_wait = _ExitWait(self.client.api, self.container.id)
        self.stream = self.container.attach(stdout=True, stderr=True, stream=True, logs=False)
        self.started_at = utcnow()
        self.container.start()

    def _line(self, line: str) -> None:
        # The shell's exit line comes after a newline of its own: a blank line just before
        # it is that newline, not the step's output, so a blank line waits for the next one.
        if line.startswith(self.exit_prefix):
            self.held_blank = False
            self.shell_exit = _parse_exit(line[len(self.exit_prefix) :])
            return
        if self.held_blank:
            self.held_blank = False
            self.on_output("")
        if line == "":
            self.held_blank = True
        else:
            self.on_output(line)

    def _supervise(self, chunks: queue.Queue[object]) -> None:
        request = self.request
        now = time.monotonic()
        deadline = now + request.time_limit_s if request.time_limit_s is not None else None
        silence = request.no_output_timeout_s
        last_output = now
        kill_at: float | None = None
        while True:
            wait = STOP_CHECK_S
            if self.verdict is None:
                if deadline is not None:
                    wait = min(wait, deadline - now)
                if silence is not None:
                    wait = min(wait, last_output + silence - now)
            elif kill_at is not None:
                wait = min(wait, kill_at - now)
            try:
                item = chunks.get(timeout=max(wait, 0.0))
            except queue.Empty:
                item = None
            if item is _END:
                break
            now = time.monotonic()
            if isinstance(item, bytes):
                last_output = now
                self.splitter.feed(item)
            if self.verdict is None:
                verdict = self._check_limits(now, deadline, last_output)
                if verdict is not None:
                    # docker stop, without blocking the output: the stop signal now,
                    # SIGKILL after the grace period.
                    self.verdict = verdict
                    kill_at = now + self.stop_grace_s
                    self._signal(self.container.attrs.get("Config", {}).get("StopSignal"))
            elif kill_at is not None and now >= kill_at:
                kill_at = None
                self._signal("SIGKILL")
        self.splitter.close()
        if self.held_blank:
            self.held_blank = False
            self.on_output("")

    def _check_limits(
        self, now: float, deadline: float | None, last_output: float
    ) -> Verdict | None:
        request = self.request
        if self.stop.is_set():
            return STOPPED, "stopped", None
        if deadline is not None and now >= deadline:
            assert request.time_limit_s is not None
            limit = format_seconds(request.time_limit_s)
            return ERROR, f"time limit of {limit} exceeded", FailureKind.TIME_LIMIT
        silence = request.no_output_timeout_s
        if silence is not None and now - last_output >= silence:
            return ERROR, f"no output for {format_seconds(silence)}", FailureKind.NO_OUTPUT
        return None

    def _signal(self, signal_name: str | None) -> None:
        try:
            self.container.kill(signal=signal_name or "SIGTERM")
        except DOCKER_ERRORS:
            pass  # it has exited already, or is gone: the output stream ends either way

    def _outcome(self) -> tuple[Verdict | None, int | None]:
        shell_exit = self.shell_exit
        if self.verdict is None and shell_exit is not None and shell_exit.clean:
            # The output has ended and the shell said it exits 0 with no OOM kill: nothing the
            # daemon could add changes the outcome, and it removes the container itself.
            self.exited = True
            return None, 0
        assert self.exit_wait is not None
        exit_code = self.exit_wait.result(self.api_timeout_s)
        self.exited = True
        if self._oom_killed():
            limit = self.request.memory_mb
            memory = f"memory limit {limit} MB" if limit is not None else "no memory limit set"
            return (ERROR, f"killed by the OOM killer ({memory})", FailureKind.OOM), exit_code
        if self.verdict is not None:
            return self.verdict, exit_code
        if exit_code == 0:
            return None, 0
        signal_name = self._killed_from_outside() if exit_code > 128 else None
        if signal_name is not None:
            reason = f"container killed from outside (signal {signal_name})"
            return (CRASHED, reason, FailureKind.INFRASTRUCTURE), exit_code
        return (ERROR, *exit_failure(exit_code)), exit_code

    def _oom_killed(self) -> bool:
        """Whether the daemon saw an OOM kill: its inspect while the container is still
        there (its removal follows the exit), else its ``oom`` events."""
        try:
            self.container.reload()
        except docker.errors.NotFound:
            return self._events("oom") is not None
        return bool(self.container.attrs.get("State", {}).get("OOMKilled"))

    def _killed_from_outside(self) -> str | None:
        """The signal of a ``docker kill``/``stop`` we did not send, from the daemon's events."""
        event = self._events("kill")
        if event is None:
            return None
        number = event.get("Actor", {}).get("Attributes", {}).get("signal")
        return _signal_name(number) if number is not None else None

    def _events(self, kind: str) -> dict | None:
        """The container's first ``kind`` event since it started, from the daemon's log."""
        assert self.started_at is not None
        events = self.client.events(
            since=int(self.started_at.timestamp()) - 1,
            until=f"{time.time():.6f}",
            filters={"container": self.container.id, "event": kind},
            decode=True,
        )
        try:
            for event in events:
                return dict(event)
        finally:
            events.close()
        return None

    def cleanup(self) -> None:
        """Remove the container unless it exited (the daemon removes those); never raises.

        One whose creation was interrupted is found by its run label.
        """
        if not self.exited:
            self._remove()
        self._close_streams()
        if self.reader is not None:
            # Drain what the reader still holds, so that it can see the closed stream and end.
            deadline = time.monotonic() + 5
            while self.reader.is_alive() and time.monotonic() < deadline:
                try:
                    self.chunks.get(timeout=STOP_CHECK_S)
                except queue.Empty:
                    pass

    def _remove(self) -> None:
        containers = [self.container] if self.container is not None else []
        if self.container is None and self.creating:
            try:
                containers = self.client.containers.list(
                    all=True, filters={"label": f"{RUN_LABEL}={self.token}"}, sparse=True
                )
            except DOCKER_ERRORS:
                containers = []
        for container in containers:
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                pass
            except DOCKER_ERRORS:
                pass  # the label lets a later cleanup find it

    def _close_streams(self) -> None:
        for stream in (self.stream, self.exit_wait):
            if stream is not None:
                try:
                    stream.close()
                except Exception:  # noqa: BLE001 - closing a dead socket may fail any way
                    pass
        self.stream = self.exit_wait = None


class _ExitWait:
    """``POST /containers/{id}/wait?condition=next-exit``, sent now, answered at the exit.

    The SDK's ``wait`` blocks until the answer; this sends the request and returns once the
    daemon has answered with its headers, which it does after registering the wait, so an
    exit right after the start is not missed.
    """

    def __init__(self, api: Any, container_id: str) -> None:
        self._response = api._post(
            api._url("/containers/{0}/wait", container_id),
            params={"condition": "next-exit"},
            stream=True,
            timeout=None,  # a step may run for days; result() bounds the wait after the exit
        )
        api._raise_for_status(self._response)
        self._body: dict[str, Any] = {}
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read, name="sweeper-docker-wait", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            self._body = self._response.json()
        except Exception as exc:  # noqa: BLE001 - reported by result()
            self._error = exc
        finally:
            self._done.set()

    def result(self, timeout_s: float) -> int:
        """The exit code, once the output has ended; raises a Docker error after ``timeout_s``."""
        if not self._done.wait(timeout_s):
            raise docker.errors.DockerException(
                f"the daemon did not report the container's exit within {timeout_s:g} s"
            )
        if self._error is not None:
            raise docker.errors.DockerException(f"waiting for the exit failed: {self._error}")
        return int(self._body["StatusCode"])

    def close(self) -> None:
        """Drop the request (the daemon cancels the wait)."""
        self._response.close()


def _pump(stream: Iterator[bytes], chunks: queue.Queue[object]) -> None:
    # Blocking reads on their own thread; the caller's thread handles lines and limits.
    try:
        for chunk in stream:
            chunks.put(chunk)
    except Exception:  # noqa: BLE001 - a broken stream ends the run; the outcome explains it
        pass
    finally:
        chunks.put(_END)


@dataclass(frozen=True)
class ShellExit:
    """The step's shell's exit line: its exit status and the container cgroup's figures
    (None where the cgroup did not tell)."""

    status: int
    oom_kills: int | None
    cpu_s: float | None = None
    peak_memory_mb: float | None = None

    @property
    def clean(self) -> bool:
        """Exit status 0 and no OOM kill: the run is complete without asking the daemon."""
        return self.status == 0 and self.oom_kills == 0


def _parse_exit(text: str) -> ShellExit | None:
    """``"STATUS OOMKILLS CPU_NS PEAK_BYTES"`` of the shell's exit line; None if it is not.

    >>> _parse_exit("0 0 1500000000 209715200")
    ShellExit(status=0, oom_kills=0, cpu_s=1.5, peak_memory_mb=200.0)
    >>> _parse_exit("3 - - -")
    ShellExit(status=3, oom_kills=None, cpu_s=None, peak_memory_mb=None)
    """
    parts = text.split()
    if len(parts) != 4 or not parts[0].isdigit():
        return None
    status, oom, cpu_ns, peak = (int(p) if p.isdigit() else None for p in parts)
    assert status is not None
    return ShellExit(
        status,
        oom,
        None if cpu_ns is None else round(cpu_ns / 1e9, 3),
        None if peak is None else round(peak / 2**20, 1),
    )


def _signal_name(value: str) -> str:
    try:
        return signal.Signals(int(value)).name
    except ValueError:
        return value


def explain(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)
