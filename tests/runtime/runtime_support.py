"""Helpers shared by the runtime tests (a plain module: conftest files are not for importing)."""

from __future__ import annotations

import shlex
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweeper.runtime import DockerRuntime, LocalRuntime, RunRequest, RunResult, Runtime
from sweeper.runtime.docker import EXECUTION_LABEL

BUSYBOX = "sweeper-test/busybox:latest"
PYTHON = "sweeper-test/python:latest"


@dataclass
class Output:
    """Collects output lines."""

    lines: list[str] = field(default_factory=list)

    def __call__(self, line: str) -> None:
        self.lines.append(line)


def stop_on(word: str, stop: threading.Event, output: Output) -> Callable[[str], None]:
    """An output callback that sets ``stop`` when the step prints ``word``."""

    def on_output(line: str) -> None:
        output(line)
        if line == word:
            stop.set()

    return on_output


def docker_client() -> Any:
    import docker

    return docker.from_env()


def containers_labelled(execution_id: str) -> list[Any]:
    return docker_client().containers.list(
        all=True, filters={"label": f"{EXECUTION_LABEL}={execution_id}"}, ignore_removed=True
    )


def containers_left(execution_id: str, *, within_s: float = 60.0) -> list[Any]:
    """The execution's containers still there after ``within_s``: waits for them to go, as
    the daemon removes an exited container (``auto_remove``) a moment after its exit."""
    deadline = time.monotonic() + within_s
    while True:
        left = containers_labelled(execution_id)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


@dataclass
class Harness:
    """A runtime with what a test needs to run the same step in it."""

    runtime: Runtime
    workdir: Path
    execution_id: str
    image: str | None
    python: str  # how to start Python in this runtime, shell-quoted
    mount: str  # where the work folder appears to the step

    def request(self, *commands: str, **options: Any) -> RunRequest:
        options.setdefault("image", self.image)
        return RunRequest(self.execution_id, commands, self.workdir, **options)

    def run(
        self, *commands: str, stop: threading.Event | None = None, **options: Any
    ) -> tuple[RunResult, Output]:
        output = Output()
        result = self.runtime.run(
            self.request(*commands, **options), output, stop or threading.Event()
        )
        return result, output


def make_harness(kind: str, workdir: Path, execution_id: str, **runtime_options: Any) -> Harness:
    if kind == "local":
        return Harness(
            LocalRuntime(**runtime_options),
            workdir,
            execution_id,
            None,
            shlex.quote(sys.executable),
            str(workdir.resolve()),
        )
    return Harness(
        DockerRuntime(**runtime_options), workdir, execution_id, PYTHON, "python3", "/valohai"
    )


def process_alive(pid: int, *, within_s: float = 10.0) -> bool:
    """True if ``pid`` still runs after ``within_s``: waits for it to end (a signal takes a
    moment to land on a loaded machine), so only a process that survives is reported.

    A zombie waiting for a reaper counts as dead.
    """
    deadline = time.monotonic() + within_s
    while True:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return False
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.01)
