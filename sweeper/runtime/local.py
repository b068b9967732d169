"""Running an execution as a local process group."""

from __future__ import annotations

import math
import os
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import datetime

from sweeper.record import FailureKind
from sweeper.runtime.base import (
    CRASHED,
    ERROR,
    STOPPED,
    RunRequest,
    RunResult,
    Runtime,
    Verdict,
    exit_failure,
    format_seconds,
    utcnow,
)
from sweeper.runtime.descendants import RunProcesses
from sweeper.runtime.output import LineSplitter

#: How often the stop event is checked while nothing else happens.
STOP_CHECK_S = 0.05
#: How long to wait for output still in flight after the step's shell and every process
#: of the run are gone; only a process that hid from the run can hold the pipe that long.
DRAIN_S = 1.0
#: How long processes that survive SIGKILL (stuck in the kernel) may hold up the end of a run.
KILL_WAIT_S = 5.0
_READ_SIZE = 64 * 1024


class LocalRuntime(Runtime):
    """Runs the commands with ``/bin/sh -e`` in a new process group on this machine.

    The step inherits this process's environment (``PATH`` and all) plus
    ``PYTHONUNBUFFERED=1``, the user's variables and the ``VH_*`` variables pointing at the
    work folder's subfolders. A stop or a time limit sends SIGTERM to every process of the
    run and SIGKILL ``stop_grace_s`` seconds later; when the shell exits, whatever it left
    running gets the same SIGTERM, grace and SIGKILL, as Docker ends a container's other
    processes with it. "Every process" includes those that left the step's session (a
    daemon, ``setsid``): while a run goes on this process is a child subreaper, so that they
    stay in its tree, and the step's environment carries a token that tells them from any other
    process (see :mod:`sweeper.runtime.descendants`). The image is ignored.

    The result's ``cpu_s`` is the CPU time of every process of the run that was reaped (by
    the shell, a process of the run, or here): the whole tree, short-lived processes
    included. ``peak_memory_mb`` is the largest peak RSS of one of them (not the sum of
    processes that ran at once), None for a step that never used more memory than the
    process that runs it: the kernel hands a starting program the peak of the memory it
    replaces, so a smaller peak cannot be told from that.

    >>> import threading
    >>> from pathlib import Path
    >>> runtime = LocalRuntime(stop_grace_s=2)
    >>> # runtime.run(RunRequest("e1", ("python train.py",), Path("work")), print, threading.Event())
    """

    name = "local"

    def __init__(self, *, stop_grace_s: float = 5.0, shell: str = "/bin/sh") -> None:
        self.stop_grace_s = stop_grace_s
        self.shell = shell
        self._host = socket.gethostname()

    def resolve_image(self, image: str, pull_policy: str) -> str | None:
        """Local runs ignore images: always ``None``."""
        return None

    def environment(self, request: RunRequest) -> dict[str, str]:
        """The step's environment: inherited, then user variables, then ``VH_*``."""
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(request.environment)
        env.update(request.vh_environment(request.workdir.resolve()))
        if request.gpu_ids:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(request.gpu_ids)
        return env

    def run(
        self, request: RunRequest, on_output: Callable[[str], None], stop: threading.Event
    ) -> RunResult:
        """Run the commands locally; see :meth:`Runtime.run`."""
        started_at = utcnow()
        if stop.is_set():
            return self._result((STOPPED, "stopped before it started", None), None, started_at)
        processes = RunProcesses()
        try:
            try:
                process = subprocess.Popen(
                    [self.shell, "-e", "-c", request.script()],
                    cwd=request.workdir / "repository",
                    env={**self.environment(request), **processes.environment()},
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    bufsize=0,
                )
            except OSError as exc:
                failed = (CRASHED, f"cannot start the process: {exc}", FailureKind.INFRASTRUCTURE)
                return self._result(failed, None, started_at)
            processes.attach(process.pid)
            try:
                verdict = _Supervisor(
                    process, processes, request, on_output, stop, self.stop_grace_s
                ).run()
            finally:
                if process.returncode is None:
                    _kill_group(process.pid, signal.SIGKILL)
                    _kill_all(processes)
                    _reap(process, processes)
                assert process.stdout is not None
                process.stdout.close()
        finally:
            processes.close()
        exit_code = process.returncode
        if exit_code < 0:
            exit_code = 128 - exit_code
            if verdict is None:
                # The shell itself died of a signal nobody here sent: the step's whole tree
                # was killed from outside (a Ray worker shutting down kills its children,
                # an operator's kill). A step that dies of a signal, the OOM killer's
                # included, leaves the shell to exit with 128 + N: that stays an error.
                reason = f"killed from outside (signal {_signal_name(-process.returncode)})"
                verdict = (CRASHED, reason, FailureKind.INFRASTRUCTURE)
        if verdict is None and exit_code != 0:
            verdict = (ERROR, *exit_failure(exit_code))
        return self._result(verdict, exit_code, started_at, processes)

    def _result(
        self,
        verdict: Verdict | None,
        exit_code: int | None,
        started_at: datetime,
        processes: RunProcesses | None = None,
    ) -> RunResult:
        """The result of a run that ended as ``verdict`` says (None: complete), with what
        the reaped ``processes`` used (none: nothing ran)."""
        cpu_s, peak_mb = processes.usage() if processes is not None else (None, None)
        return RunResult.ended(
            verdict,
            exit_code,
            started_at,
            host=self._host,
            cpu_s=None if cpu_s is None else round(cpu_s, 3),
            peak_memory_mb=None if peak_mb is None else round(peak_mb, 1),
        )


class _Supervisor:
    """One run's event loop: read output, watch the process, enforce stop and limits.

    Everything happens on the calling thread with ``poll``: the output pipe and a pidfd wake
    it at once; the short timeout only serves the stop event and the deadlines.
    """

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        processes: RunProcesses,
        request: RunRequest,
        on_output: Callable[[str], None],
        stop: threading.Event,
        grace_s: float,
    ) -> None:
        self.process = process
        self.processes = processes
        self.request = request
        self.stop = stop
        self.grace_s = grace_s
        self.splitter = LineSplitter(on_output)
        now = time.monotonic()
        limit = request.time_limit_s
        self.deadline = now + limit if limit is not None else None
        self.last_output = now
        # Set when we end the run ourselves: what to report.
        self.verdict: Verdict | None = None
        self.kill_at = math.inf
        self.hard_killed_at: float | None = None
        self.ending = False
        self.cleared = False  # the shell exited and no process of the run was left
        self.drain_until: float | None = None

    def run(self) -> Verdict | None:
        process = self.process
        assert process.stdout is not None
        out = process.stdout.fileno()
        pidfd = _pidfd_open(process.pid)
        poller = select.poll()
        poller.register(out, select.POLLIN)
        if pidfd is not None:
            poller.register(pidfd, select.POLLIN)
        exited = eof = False
        try:
            while True:
                timeout_ms = math.ceil(self._wait_s(time.monotonic()) * 1000)
                for fd, _ in poller.poll(timeout_ms):
                    if fd == out:
                        data = os.read(out, _READ_SIZE)
                        if data:
                            self.last_output = time.monotonic()
                            self.splitter.feed(data)
                        else:
                            eof = True
                            poller.unregister(out)
                    elif fd == pidfd:
                        exited = True
                        poller.unregister(pidfd)
                if not exited and pidfd is None:
                    exited = _has_exited(process.pid)
                now = time.monotonic()
                if exited:
                    if self._ended(now, eof):
                        break
                elif self.verdict is None:
                    self._check_limits(now)
                elif self.hard_killed_at is None and now >= self.kill_at:
                    self._kill(now)
            self.splitter.close()
        finally:
            if pidfd is not None:
                os.close(pidfd)
        _reap(process, self.processes)
        return self.verdict

    def _ended(self, now: float, eof: bool) -> bool:
        """Once the shell has exited, each round: end what it left; whether the run is over."""
        if self.cleared:
            left: list[int] = []  # nothing was left to fork anything since
        elif not self.ending:
            self.ending = True
            if self.verdict is None:
                # The step ended by itself: what it left running is stopped as by a stop.
                self.kill_at = now + self.grace_s
                _kill_group(self.process.pid, signal.SIGTERM)
                left = self.processes.signal(signal.SIGTERM)
            else:
                left = self.processes.alive()
        elif self.hard_killed_at is None and now < self.kill_at:
            left = self.processes.alive()
        else:
            # SIGKILL again each round: a process forked since the last one is not spared.
            self.hard_killed_at = self.hard_killed_at or now
            _kill_group(self.process.pid, signal.SIGKILL)
            left = self.processes.signal(signal.SIGKILL)
        if left:
            # Only a process stuck in the kernel outlives SIGKILL: do not wait on it forever.
            return self.hard_killed_at is not None and now >= self.hard_killed_at + KILL_WAIT_S
        self.cleared = True
        if eof:
            return True
        if self.drain_until is None:
            self.drain_until = now + DRAIN_S
        return now >= self.drain_until  # only a process that hid from the run holds the pipe

    def _check_limits(self, now: float) -> None:
        request = self.request
        if self.stop.is_set():
            self._terminate((STOPPED, "stopped", None), now)
        elif self.deadline is not None and now >= self.deadline:
            assert request.time_limit_s is not None
            limit = format_seconds(request.time_limit_s)
            self._terminate((ERROR, f"time limit of {limit} exceeded", FailureKind.TIME_LIMIT), now)
        elif (
            request.no_output_timeout_s is not None
            and now - self.last_output >= request.no_output_timeout_s
        ):
            silence = format_seconds(request.no_output_timeout_s)
            self._terminate((ERROR, f"no output for {silence}", FailureKind.NO_OUTPUT), now)

    def _wait_s(self, now: float) -> float:
        wait = STOP_CHECK_S
        if self.verdict is None and not self.ending:
            if self.deadline is not None:
                wait = min(wait, self.deadline - now)
            if self.request.no_output_timeout_s is not None:
                wait = min(wait, self.last_output + self.request.no_output_timeout_s - now)
        elif self.hard_killed_at is None:
            wait = min(wait, self.kill_at - now)
        if self.drain_until is not None:
            wait = min(wait, self.drain_until - now)
        return max(wait, 0.0)

    def _terminate(self, verdict: Verdict, now: float) -> None:
        self.verdict = verdict
        self.kill_at = now + self.grace_s
        self._signal(signal.SIGTERM)

    def _kill(self, now: float) -> None:
        self.hard_killed_at = now
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        # The group at once (nothing it forks meanwhile escapes), then those that left it.
        _kill_group(self.process.pid, sig)
        self.processes.signal(sig)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _kill_all(processes: RunProcesses) -> None:
    """SIGKILL every process of the run and reap the adopted ones (a bounded wait)."""
    deadline = time.monotonic() + KILL_WAIT_S
    while processes.signal(signal.SIGKILL) and time.monotonic() < deadline:
        time.sleep(0.01)  # a killed process takes a moment to become a zombie to reap


def _reap(process: subprocess.Popen[bytes], processes: RunProcesses) -> None:
    """Wait for the run's shell (``wait4``, not ``Popen.wait``: its usage comes with it)."""
    if process.returncode is not None:
        return
    try:
        _, status, usage = os.wait4(process.pid, 0)
    except ChildProcessError:
        process.wait()  # reaped behind our back (SIGCHLD ignored): Popen knows what to say
        return
    process.returncode = os.waitstatus_to_exitcode(status)
    processes.reaped(usage, started_here=True)


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _pidfd_open(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _has_exited(pid: int) -> bool:
    # WNOWAIT leaves the zombie in place, so the process group id cannot be reused before
    # we have killed the group.
    info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    return info is not None
