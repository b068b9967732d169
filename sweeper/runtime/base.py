"""The runtime interface: what to run (:class:`RunRequest`), how it ended (:class:`RunResult`).

A runtime runs the rendered commands of one execution in a work folder and reports its output
line by line. :class:`~sweeper.runtime.LocalRuntime` and :class:`~sweeper.runtime.DockerRuntime`
implement the same contract, so a step that uses the ``VH_*`` variables behaves the same in
both.
"""

from __future__ import annotations

import signal
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

from sweeper.errors import SweeperError
from sweeper.record import FailureKind
from sweeper.status import Status

#: Statuses a run can end with (aliases of the :class:`Status` members).
COMPLETE = Status.COMPLETE
ERROR = Status.ERROR
STOPPED = Status.STOPPED
CRASHED = Status.CRASHED

PULL_POLICIES = ("missing", "always", "never")

#: How a run that did not complete ended: its status, the reason in words and the failure
#: kind (None for a run that was stopped, not failed).
Verdict = tuple[Status, str, FailureKind | None]

#: The exit code of a step the kernel's OOM killer ended (SIGKILL, 128 + 9).
OOM_EXIT_CODE = 137

#: The folders of a work folder, by the ``VH_*`` variable that points at them.
WORKDIR_FOLDERS = {
    "VH_REPOSITORY_DIR": "repository",
    "VH_INPUTS_DIR": "inputs",
    "VH_OUTPUTS_DIR": "outputs",
    "VH_CONFIG_DIR": "config",
}


@dataclass(frozen=True)
class RunRequest:
    """Everything a runtime needs to run one execution.

    ``commands`` are rendered shell lines (values already shell-quoted) run by ``/bin/sh -e``
    in order: the first failing one ends the run with its exit code. ``workdir`` holds
    ``repository/``, ``inputs/``, ``outputs/`` and ``config/``; the step runs in
    ``repository/``. ``environment`` holds the user's variables with real secret values; the
    runtime adds the ``VH_*`` variables, which win over user values of the same name.
    """

    execution_id: str
    commands: tuple[str, ...]
    workdir: Path
    environment: Mapping[str, str] = field(default_factory=dict)
    image: str | None = None
    cpus: float | None = None
    memory_mb: int | None = None
    gpu_ids: tuple[str, ...] = ()
    time_limit_s: float | None = None
    no_output_timeout_s: float | None = None
    pull_policy: str = "missing"
    job_id: str | None = None
    #: The step's declared bind mounts (source, destination, read-only); Docker only.
    mounts: tuple[tuple[str, str, bool], ...] = ()
    #: Run on the node's own network (a distributed task's member, which listens on its
    #: node's address); only the Docker runtime has another.
    host_network: bool = False

    def script(self) -> str:
        """The commands as one ``sh -e`` script: newlines keep multi-line commands intact."""
        return "\n".join(self.commands)

    def vh_environment(self, root: str | Path) -> dict[str, str]:
        """The ``VH_*`` variables for a work folder seen at ``root`` by the step."""
        env = {name: f"{root}/{folder}" for name, folder in WORKDIR_FOLDERS.items()}
        env["VH_EXECUTION_ID"] = self.execution_id
        env["VH_JOB_ID"] = self.job_id or self.execution_id
        return env


@dataclass(frozen=True)
class RunResult:
    """How a run ended.

    ``status`` is ``complete`` (exit code 0), ``error`` (non-zero exit, a time limit, a
    no-output timeout or the OOM killer; ``reason`` says which in words, ``failure_kind`` as a
    :class:`FailureKind`), ``stopped`` (the stop event was set) or ``crashed`` (the
    infrastructure failed: a Docker error, the container was killed or removed from outside;
    ``failure_kind`` is ``infrastructure``). ``failure_kind`` is None unless the run failed.
    ``exit_code`` follows the shell: 128 + N when a signal N ended the step.

    ``cpu_s`` is the CPU time (user + system, seconds) the step's processes used, and
    ``peak_memory_mb`` their peak memory (MiB), each None where the runtime could not tell:
    the local runtime's are the step's process tree as the kernel accounts it when a process
    is reaped (see :class:`~sweeper.runtime.LocalRuntime`), the Docker runtime's the
    container's cgroup.
    """

    status: Status
    exit_code: int | None
    reason: str | None
    started_at: datetime
    ended_at: datetime
    image_digest: str | None = None
    host: str | None = None
    failure_kind: FailureKind | None = None
    cpu_s: float | None = None
    peak_memory_mb: float | None = None

    @classmethod
    def ended(
        cls, verdict: Verdict | None, exit_code: int | None, started_at: datetime, **fields: Any
    ) -> RunResult:
        """A run that ends now as ``verdict`` says (None: complete); ``fields`` as named."""
        status, reason, kind = verdict if verdict is not None else (COMPLETE, None, None)
        return cls(status, exit_code, reason, started_at, utcnow(), failure_kind=kind, **fields)


class Runtime(ABC):
    """Runs one execution's commands; one instance may serve many runs, one at a time or not.

    Everything that differs between runtimes goes through this class: the class members
    below say whether images matter and where the step sees its work folder, and
    :meth:`remove_leftovers` cleans up after a runner that died. Code outside
    ``sweeper/runtime/`` never asks which runtime it has.
    """

    name: ClassVar[str]
    #: Whether the step runs in an image: the record keeps it and it is part of the spec hash.
    uses_images: ClassVar[bool] = False

    def workdir_root(self, workdir: Path) -> str:
        """Where the step sees ``workdir`` (the paths written into ``inputs.json``)."""
        return str(workdir)

    def remove_leftovers(self, execution_id: str) -> int:
        """Remove what a runner killed midway left running for an execution; how many things.

        Best effort and never raises: called while settling an execution whose runner died.
        """
        return 0

    @abstractmethod
    def run(
        self, request: RunRequest, on_output: Callable[[str], None], stop: threading.Event
    ) -> RunResult:
        """Run ``request`` and block until it ends.

        ``on_output`` is called on the calling thread with each output line (stdout and
        stderr merged, without the newline) as soon as it is printed; setting ``stop`` from
        it or from another thread stops the run. An exception raised by ``on_output``
        stops the run and propagates; nothing is left running either way.

        Raises :class:`~sweeper.errors.RuntimeUnavailableError` when the run cannot start
        at all (Docker unreachable, image missing); failures after that are a ``crashed``
        result.
        """

    @abstractmethod
    def resolve_image(self, image: str, pull_policy: str) -> str | None:
        """Make ``image`` available as ``pull_policy`` says and return its digest.

        ``None`` where the runtime ignores images. Raises
        :class:`~sweeper.errors.RuntimeUnavailableError` when the image cannot be had.
        """


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def format_seconds(seconds: float) -> str:
    """``5`` -> ``"5s"``, ``0.5`` -> ``"0.5s"``: how limits appear in reasons."""
    return f"{seconds:g}s"


def exit_reason(exit_code: int) -> str:
    """The reason for a non-zero exit code, naming the signal for the shell's 128 + N codes."""
    if exit_code > 128:
        try:
            return (
                f"killed by signal {signal.Signals(exit_code - 128).name} (exit code {exit_code})"
            )
        except ValueError:
            pass
    return f"exit code {exit_code}"


def exit_failure(exit_code: int) -> tuple[str, FailureKind]:
    """Why a step that exited with a non-zero ``exit_code`` failed: the reason and the kind.

    137 is the OOM killer's SIGKILL (128 + 9): ``oom``; any other code is the step's own
    ``user_error``.

    >>> exit_failure(3)
    ('exit code 3', <FailureKind.USER_ERROR: 'user_error'>)
    >>> exit_failure(137)
    ('killed by signal SIGKILL (exit code 137)', <FailureKind.OOM: 'oom'>)
    """
    kind = FailureKind.OOM if exit_code == OOM_EXIT_CODE else FailureKind.USER_ERROR
    return exit_reason(exit_code), kind


def check_pull_policy(pull_policy: str) -> None:
    """Raise :class:`SweeperError` naming the value unless it is a known pull policy."""
    if pull_policy not in PULL_POLICIES:
        raise SweeperError(
            f"unknown pull policy {pull_policy!r}: use one of {', '.join(PULL_POLICIES)}"
        )
