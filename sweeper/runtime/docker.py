"""Running an execution in a Docker container through the Docker SDK."""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions
from docker.types import DeviceRequest

from sweeper.errors import RuntimeUnavailableError, SweeperError
from sweeper.runtime.base import (
    COMPLETE,
    CRASHED,
    ERROR,
    STOPPED,
    RunRequest,
    RunResult,
    Runtime,
    check_pull_policy,
    exit_reason,
    format_seconds,
    utcnow,
)
from sweeper.runtime.docker_network import NetworkHolder, NetworkHolders
from sweeper.runtime.output import LineSplitter
from sweeper.status import Status

#: The label every container carries, so leftovers of a crashed sweeper can be found.
EXECUTION_LABEL = "sweeper.execution_id"
#: A label unique to one run, to find a container whose creation was interrupted.
RUN_LABEL = "sweeper.run"
#: Where the work folder appears inside the container.
MOUNT_POINT = "/valohai"
#: The start of the line the step's shell prints as it exits: the run's token, its exit
#: status and the container's OOM kill count ("-" where the cgroup does not tell).
EXIT_MARKER = "sweeper-exit-"
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
STOP_CHECK_S = 0.05
#: How long an image resolve_image resolved is what the next run of it runs (the execution
#: layer resolves it just before the run); older, the run resolves it again.
RESOLVED_REUSE_S = 60.0
#: Output chunks read ahead of the line handling (each as the daemon sent it).
CHUNKS_QUEUED = 64

_DOCKER_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)
_END = object()


class DockerRuntime(Runtime):
    """Runs the commands with ``/bin/sh -e`` in a fresh container of the step's image.

    The work folder is bind-mounted read-write at ``/valohai`` (its only mount) and the step
    runs in ``/valohai/repository``. The container runs detached under Docker's init (tini,
    told to signal the whole process group, so a stop reaches the step and not just the
    shell), with ``no-new-privileges``, never privileged, with the request's CPU, memory
    (swap included) and GPU limits, labelled ``sweeper.execution_id``. A stop or a time limit
    is ``docker stop`` with ``stop_grace_s``, then ``docker kill``. The container is created
    with ``auto_remove``: the daemon removes it once it exits, even when the runner was
    killed, and :meth:`run` removes it on every other path out.

    Speed: the shell prints its exit status (and the cgroup's OOM kill count) as its last
    line, so a step that exits 0 without an OOM kill is complete as soon as its output ends,
    without waiting for the daemon's clean-up of the exited container before ``wait``
    answers (network, mounts: ~0.1 s); any other end takes the daemon's word (``wait``,
    then ``inspect`` or its events).

    ``share_network`` (default) starts the containers in a bridge-network namespace that
    consecutive runs take turns in (see :class:`~sweeper.runtime.docker_network.NetworkHolders`):
    the step has the default bridge network as in a container of its own, without the
    daemon creating and tearing down a namespace for each (~0.1-0.3 s a container). It is
    on unless ``share_network=False`` or the node's ``SWEEPER_DOCKER_SHARE_NETWORK=0``.

    ``base_url`` is the daemon's address (default: ``DOCKER_HOST`` or the local socket).
    ``output_owner`` (uid, gid) is given the files in ``/valohai/outputs`` when the step ends,
    so a root container does not leave files the host user cannot remove; by default the
    host user when that is not root, else nobody.

    >>> runtime = DockerRuntime(stop_grace_s=2)
    >>> # runtime.resolve_image("python:3.12", "missing") -> "python@sha256:..."
    """

    name = "docker"
    uses_images = True

    def __init__(
        self,
        *,
        base_url: str | None = None,
        stop_grace_s: float = 5.0,
        output_owner: tuple[int, int] | None = None,
        api_timeout_s: float = 60.0,
        init: bool = True,
        share_network: bool | None = None,
    ) -> None:
        self.base_url = base_url
        self.stop_grace_s = stop_grace_s
        if output_owner is None and os.getuid() != 0:
            output_owner = (os.getuid(), os.getgid())
        self.output_owner = output_owner
        self.api_timeout_s = api_timeout_s
        self.init = init
        self._client: Any = None
        self._host: str | None = None
        self._lock = threading.Lock()
        self._resolved: dict[tuple[str, str], tuple[float, Any]] = {}
        if share_network is None:  # a node's opt-out: SWEEPER_DOCKER_SHARE_NETWORK=0
            share_network = os.environ.get("SWEEPER_DOCKER_SHARE_NETWORK", "1") != "0"
        #: The network namespaces the containers take turns in (None: one each).
        self.network = NetworkHolders() if share_network else None

    @property
    def address(self) -> str:
        """The daemon address used, for messages."""
        return self.base_url or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST

    def client(self) -> Any:
        """The connected ``docker.DockerClient``; raises RuntimeUnavailableError if unreachable."""
        with self._lock:
            if self._client is None:
                try:
                    if self.base_url is None:
                        client = docker.from_env(timeout=int(self.api_timeout_s))
                    else:
                        client = docker.DockerClient(
                            base_url=self.base_url, timeout=int(self.api_timeout_s)
                        )
                    self._host = client.info().get("Name")
                except _DOCKER_ERRORS as exc:
                    raise RuntimeUnavailableError(
                        f"Docker daemon is not reachable at {self.address}: start it or use "
                        f"--runtime local ({exc})"
                    ) from exc
                self._client = client
            return self._client

    def workdir_root(self, workdir: Path) -> str:
        """The work folder is mounted at ``/valohai`` in the container."""
        return MOUNT_POINT

    def remove_leftovers(self, execution_id: str) -> int:
        """Remove the execution's containers, found by label (see :func:`remove_leftover_containers`)."""
        return remove_leftover_containers(execution_id, self.base_url)

    def resolve_image(self, image: str, pull_policy: str) -> str | None:
        """Ensure ``image`` is present per ``pull_policy``; return its RepoDigest or image id.

        The next :meth:`run` of the same image and policy runs this very image (one inspect
        or pull per execution, and the digest the execution layer records is the image run).
        """
        resolved = self._image(image, pull_policy)
        with self._lock:
            self._resolved[image, pull_policy] = (time.monotonic(), resolved)
        return _digest(resolved)

    def _image_to_run(self, image: str, pull_policy: str) -> Any:
        # What resolve_image just resolved for this run; else resolved now.
        with self._lock:
            at, resolved = self._resolved.pop((image, pull_policy), (0.0, None))
        if resolved is not None and time.monotonic() - at < RESOLVED_REUSE_S:
            return resolved
        return self._image(image, pull_policy)

    def _image(self, image: str, pull_policy: str) -> Any:
        check_pull_policy(pull_policy)
        client = self.client()
        if pull_policy != "always":
            try:
                return client.images.get(image)
            except docker.errors.ImageNotFound:
                if pull_policy == "never":
                    raise RuntimeUnavailableError(
                        f"image {image!r} is not present on the Docker host at {self.address} "
                        f"and the pull policy is 'never': pull or build it first, or use "
                        f"pull policy 'missing'"
                    ) from None
            except _DOCKER_ERRORS as exc:
                raise RuntimeUnavailableError(f"cannot inspect image {image!r}: {exc}") from exc
        try:
            return client.images.pull(image)
        except _DOCKER_ERRORS as exc:
            raise RuntimeUnavailableError(
                f"cannot pull image {image!r} (pull policy {pull_policy!r}): {_explain(exc)}"
            ) from exc

    def container_options(
        self,
        request: RunRequest,
        image_id: str,
        run_token: str,
        network: NetworkHolder | None = None,
    ) -> dict:
        """The keyword arguments for ``containers.create``: everything the container gets."""
        environment = {"PYTHONUNBUFFERED": "1", **request.environment}
        environment.update(request.vh_environment(MOUNT_POINT))
        # tini forwards signals to the whole process group, not just the shell.
        environment["TINI_KILL_PROCESS_GROUP"] = "1"
        options: dict[str, Any] = {
            "image": image_id,
            "command": ["/bin/sh", "-e", "-c", self._script(request, run_token)],
            "working_dir": f"{MOUNT_POINT}/repository",
            "environment": environment,
            "volumes": {
                str(request.workdir.resolve()): {"bind": MOUNT_POINT, "mode": "rw"},
                # the step's own declared mounts, and nothing else
                **{
                    source: {"bind": destination, "mode": "ro" if readonly else "rw"}
                    for source, destination, readonly in request.mounts
                },
            },
            "labels": {EXECUTION_LABEL: request.execution_id, RUN_LABEL: run_token},
            "detach": True,
            # The daemon removes it after it exits, off our critical path and even when the
            # runner is killed meanwhile.
            "auto_remove": True,
            "init": self.init,
            "privileged": False,
            "security_opt": ["no-new-privileges"],
            "stdin_open": False,
            "tty": False,
        }
        if network is not None:
            options["network_mode"] = network.network_mode
        if request.cpus is not None:
            options["nano_cpus"] = int(request.cpus * 1e9)
        if request.memory_mb is not None:
            options["mem_limit"] = f"{request.memory_mb}m"
            options["memswap_limit"] = f"{request.memory_mb}m"
        if request.gpu_ids:
            options["device_requests"] = [
                DeviceRequest(device_ids=list(request.gpu_ids), capabilities=[["gpu"]])
            ]
            environment["NVIDIA_VISIBLE_DEVICES"] = ",".join(request.gpu_ids)
            # Inside the container the granted GPUs are numbered from 0.
            environment["CUDA_VISIBLE_DEVICES"] = ",".join(
                str(index) for index in range(len(request.gpu_ids))
            )
        return options

    def _script(self, request: RunRequest, run_token: str) -> str:
        # One stream keeps stdout and stderr in the order they were printed. On SIGTERM the
        # shell waits for the command it runs to finish (its whole group got the signal too)
        # instead of dying at once: when the shell exits, tini exits and the kernel kills
        # everything left in the container, mid-cleanup.
        lines = ["exec 2>&1", "trap 'exit 143' TERM"]
        on_exit = ["s=$?"]
        if self.output_owner is not None:
            uid, gid = self.output_owner
            on_exit.append(f"chown -R {uid}:{gid} {MOUNT_POINT}/outputs >/dev/null 2>&1 || true")
        # The exit line (see _ContainerRun._line): the memory cgroup's oom_kill count
        # (v2, else v1), "-" when neither file has one. Own line: the output may lack a
        # final newline.
        on_exit += [
            "o=-",
            "for f in /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control; "
            'do if [ -r "$f" ]; then while read -r k v; do '
            'if [ "$k" = oom_kill ]; then o="$v"; fi; done < "$f"; fi; done',
            f'printf "\\n{EXIT_MARKER}{run_token} %s %s\\n" "$s" "$o"',
            'exit "$s"',
        ]
        lines.append(f"trap '{'; '.join(on_exit)}' EXIT")
        lines.extend(request.commands)
        return "\n".join(lines)

    def run(
        self, request: RunRequest, on_output: Callable[[str], None], stop: threading.Event
    ) -> RunResult:
        """Run the commands in a container; see :meth:`Runtime.run`."""
        if request.image is None:
            raise SweeperError(
                f"execution {request.execution_id} has no image: the Docker runtime needs "
                f"one (set 'image' on the step) or use --runtime local"
            )
        client = self.client()
        image = self._image_to_run(request.image, request.pull_policy)
        digest = _digest(image)
        started_at = utcnow()
        if stop.is_set():
            return self._result(STOPPED, None, "stopped before it started", started_at, digest)
        network = self.network.take(client, image.id) if self.network is not None else None
        run = _ContainerRun(self, client, request, image.id, on_output, stop, network)
        try:
            status, exit_code, reason = run.run()
        except _DOCKER_ERRORS as exc:
            status, exit_code, reason = CRASHED, None, f"Docker error: {_explain(exc)}"
        finally:
            run.cleanup()
            if network is not None and self.network is not None:
                if run.network is network:
                    self.network.give_back(network)
                else:
                    network.close()  # it failed the run's create: gone or going
        return self._result(status, exit_code, reason, run.started_at or started_at, digest)

    def _result(
        self,
        status: Status,
        exit_code: int | None,
        reason: str | None,
        started_at: datetime,
        digest: str | None,
    ) -> RunResult:
        return RunResult(status, exit_code, reason, started_at, utcnow(), digest, self._host)


class _ContainerRun:
    """One container's life: create, start, stream, enforce limits, learn how it ended.

    The exit wait and the output stream are both opened before the start, as ``docker run``
    does: the daemon removes the container (``auto_remove``) right after it exits, so a
    request sent after that would find nothing.
    """

    def __init__(
        self,
        runtime: DockerRuntime,
        client: Any,
        request: RunRequest,
        image_id: str,
        on_output: Callable[[str], None],
        stop: threading.Event,
        network: NetworkHolder | None = None,
    ) -> None:
        self.runtime = runtime
        self.client = client
        self.network = network
        self.request = request
        self.image_id = image_id
        self.stop = stop
        self.on_output = on_output
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
        self.verdict: tuple[Status, str] | None = None
        #: (exit status, OOM kill count or None) as the step's shell printed them.
        self.shell_exit: tuple[int, int | None] | None = None
        self.held_blank = False
        self.exited = False

    def run(self) -> tuple[Status, int | None, str | None]:
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
        options = self.runtime.container_options(
            self.request, self.image_id, self.token, self.network
        )
        self.creating = True
        self.container = self.client.containers.create(**options)
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
                    kill_at = now + self.runtime.stop_grace_s
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
    ) -> tuple[Status, str] | None:
        request = self.request
        if self.stop.is_set():
            return STOPPED, "stopped"
        if deadline is not None and now >= deadline:
            assert request.time_limit_s is not None
            return ERROR, f"time limit of {format_seconds(request.time_limit_s)} exceeded"
        silence = request.no_output_timeout_s
        if silence is not None and now - last_output >= silence:
            return ERROR, f"no output for {format_seconds(silence)}"
        return None

    def _signal(self, signal_name: str | None) -> None:
        try:
            self.container.kill(signal=signal_name or "SIGTERM")
        except _DOCKER_ERRORS:
            pass  # it has exited already, or is gone: the output stream ends either way

    def _outcome(self) -> tuple[Status, int | None, str | None]:
        if self.verdict is None and self.shell_exit == (0, 0):
            # The output has ended and the shell said it exits 0 with no OOM kill: nothing the
            # daemon could add changes the outcome, and it removes the container itself.
            self.exited = True
            return COMPLETE, 0, None
        assert self.exit_wait is not None
        exit_code = self.exit_wait.result(self.runtime.api_timeout_s)
        self.exited = True
        if self._oom_killed():
            limit = self.request.memory_mb
            memory = f"memory limit {limit} MB" if limit is not None else "no memory limit set"
            return ERROR, exit_code, f"killed by the OOM killer ({memory})"
        if self.verdict is not None:
            return self.verdict[0], exit_code, self.verdict[1]
        if exit_code == 0:
            return COMPLETE, 0, None
        signal_name = self._killed_from_outside() if exit_code > 128 else None
        if signal_name is not None:
            return CRASHED, exit_code, f"container killed from outside (signal {signal_name})"
        return ERROR, exit_code, exit_reason(exit_code)

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
            except _DOCKER_ERRORS:
                containers = []
        for container in containers:
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                pass
            except _DOCKER_ERRORS:
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


def remove_leftover_containers(execution_id: str, base_url: str | None = None) -> int:
    """Remove the containers of an execution whose runner died; how many (never raises).

    A runner killed with its Ray worker (a killed driver, a lost node) never reaches its
    cleanup, and its container runs on; whoever settles the execution afterwards removes it
    by its label. Best effort: an unreachable daemon (another node's) is left alone.
    """
    removed = 0
    try:
        if base_url is None:
            client = docker.from_env(timeout=30)
        else:
            client = docker.DockerClient(base_url=base_url, timeout=30)
        try:
            # sparse: no inspect of each, which fails for one the daemon removes meanwhile
            found = client.containers.list(
                all=True, filters={"label": f"{EXECUTION_LABEL}={execution_id}"}, sparse=True
            )
            for container in found:
                try:
                    container.remove(force=True)
                    removed += 1
                except docker.errors.APIError as exc:
                    # 409: the daemon is removing it already (auto_remove after its exit)
                    if exc.status_code == 409 and _removed(container):
                        removed += 1
                except _DOCKER_ERRORS:
                    pass
        finally:
            client.close()
    except _DOCKER_ERRORS:
        pass
    return removed


def _removed(container: Any) -> bool:
    """Wait until the daemon has removed ``container``; whether it has (never raises)."""
    try:
        container.wait(condition="removed", timeout=30)
    except docker.errors.NotFound:
        return True
    except _DOCKER_ERRORS:
        return False
    return True


def _pump(stream: Iterator[bytes], chunks: queue.Queue[object]) -> None:
    # Blocking reads on their own thread; the caller's thread handles lines and limits.
    try:
        for chunk in stream:
            chunks.put(chunk)
    except Exception:  # noqa: BLE001 - a broken stream ends the run; the outcome explains it
        pass
    finally:
        chunks.put(_END)


def _parse_exit(text: str) -> tuple[int, int | None] | None:
    """``"STATUS OOMKILLS"`` of the shell's exit line; None if it is not that."""
    parts = text.split()
    if len(parts) != 2 or not parts[0].isdigit():
        return None
    return int(parts[0]), int(parts[1]) if parts[1].isdigit() else None


def _digest(image: Any) -> str:
    digests = image.attrs.get("RepoDigests") or []
    return str(digests[0]) if digests else str(image.id)


def _signal_name(value: str) -> str:
    try:
        return signal.Signals(int(value)).name
    except ValueError:
        return value


def _explain(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)
