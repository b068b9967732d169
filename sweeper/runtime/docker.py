"""Running an execution in a Docker container through the Docker SDK.

:class:`DockerRuntime` connects to the daemon, makes the step's image available and sets
what its container gets; :class:`~sweeper.runtime.docker_container.ContainerRun` runs one
container; :func:`remove_leftover_containers` cleans up after a runner that died.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.types import DeviceRequest

from sweeper.errors import RuntimeUnavailableError, SweeperError
from sweeper.record import FailureKind
from sweeper.runtime.base import (
    CRASHED,
    STOPPED,
    RunRequest,
    RunResult,
    Runtime,
    Verdict,
    check_pull_policy,
    utcnow,
)
from sweeper.runtime.docker_container import (
    DOCKER_ERRORS,
    EXIT_MARKER,
    RUN_LABEL,
    USAGE_LINES,
    ContainerRun,
    ShellExit,
    explain,
)
from sweeper.runtime.docker_network import NetworkHolder, NetworkHolders

#: The label every container carries, so leftovers of a crashed sweeper can be found.
EXECUTION_LABEL = "sweeper.execution_id"
#: Where the work folder appears inside the container.
MOUNT_POINT = "/valohai"
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
#: How long an image resolve_image resolved is what the next run of it runs (the execution
#: layer resolves it just before the run); older, the run resolves it again.
RESOLVED_REUSE_S = 60.0


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
                except DOCKER_ERRORS as exc:
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
            except DOCKER_ERRORS as exc:
                raise RuntimeUnavailableError(f"cannot inspect image {image!r}: {exc}") from exc
        try:
            return client.images.pull(image)
        except DOCKER_ERRORS as exc:
            raise RuntimeUnavailableError(
                f"cannot pull image {image!r} (pull policy {pull_policy!r}): {explain(exc)}"
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
        network_mode = _network_mode(request, network)
        if network_mode is not None:
            options["network_mode"] = network_mode
        if request.cpus is not None:
            options["nano_cpus"] = int(request.cpus * 1e9)
        if request.memory_mb is not None:
            options["mem_limit"] = f"{request.memory_mb}m"
            options["memswap_limit"] = f"{request.memory_mb}m"
        if request.gpu_ids:
            options["device_requests"] = [
                DeviceRequest(device_ids=list(request.gpu_ids), capabilities=[["gpu"]])
            ]
            environment.update(_gpu_environment(request.gpu_ids))
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
        # The exit line (see ContainerRun._line): the memory cgroup's oom_kill count
        # (v2, else v1), "-" when neither file has one, and the cgroup's CPU time and memory
        # peak. Own line: the output may lack a final newline.
        on_exit += [
            "o=-",
            "for f in /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control; "
            'do if [ -r "$f" ]; then while read -r k v; do '
            'if [ "$k" = oom_kill ]; then o="$v"; fi; done < "$f"; fi; done',
            *USAGE_LINES,
            f'printf "\\n{EXIT_MARKER}{run_token} %s %s %s %s\\n" "$s" "$o" "$c" "$m"',
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
            return self._result(
                (STOPPED, "stopped before it started", None), None, started_at, digest
            )
        network = (
            self.network.take(client, image.id)
            if self.network is not None and not request.host_network
            else None
        )
        run = ContainerRun(
            client,
            request,
            functools.partial(self.container_options, request, image.id),
            on_output,
            stop,
            network,
            stop_grace_s=self.stop_grace_s,
            api_timeout_s=self.api_timeout_s,
        )
        try:
            verdict, exit_code = run.run()
        except DOCKER_ERRORS as exc:
            verdict = (CRASHED, f"Docker error: {explain(exc)}", FailureKind.INFRASTRUCTURE)
            exit_code = None
        finally:
            run.cleanup()
            if network is not None and self.network is not None:
                if run.network is network:
                    self.network.give_back(network)
                else:
                    network.close()  # it failed the run's create: gone or going
        return self._result(
            verdict, exit_code, run.started_at or started_at, digest, run.shell_exit
        )

    def _result(
        self,
        verdict: Verdict | None,
        exit_code: int | None,
        started_at: datetime,
        digest: str | None,
        shell_exit: ShellExit | None = None,
    ) -> RunResult:
        """The result of a run that ended as ``verdict`` says (None: complete), with the
        container's figures from its shell's exit line (none where it printed none)."""
        return RunResult.ended(
            verdict,
            exit_code,
            started_at,
            image_digest=digest,
            host=self._host,
            cpu_s=shell_exit.cpu_s if shell_exit is not None else None,
            peak_memory_mb=shell_exit.peak_memory_mb if shell_exit is not None else None,
        )


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
                except DOCKER_ERRORS:
                    pass
        finally:
            client.close()
    except DOCKER_ERRORS:
        pass
    return removed


def _removed(container: Any) -> bool:
    """Wait until the daemon has removed ``container``; whether it has (never raises)."""
    try:
        container.wait(condition="removed", timeout=30)
    except docker.errors.NotFound:
        return True
    except DOCKER_ERRORS:
        return False
    return True


def _network_mode(request: RunRequest, network: NetworkHolder | None) -> str | None:
    """The container's ``network_mode``: the node's own network for a distributed member.

    A member listens on its node's address and the port reserved for it, which the other
    members were given: published ports would need the port inside to equal the one outside
    anyway, and NCCL or gloo open more ports than the one announced.
    """
    if request.host_network:
        return "host"
    return network.network_mode if network is not None else None


def _gpu_environment(gpu_ids: tuple[str, ...]) -> dict[str, str]:
    """The variables that show a container the GPUs it was granted, numbered from 0 inside."""
    return {
        "NVIDIA_VISIBLE_DEVICES": ",".join(gpu_ids),
        "CUDA_VISIBLE_DEVICES": ",".join(str(index) for index in range(len(gpu_ids))),
    }


def _digest(image: Any) -> str:
    digests = image.attrs.get("RepoDigests") or []
    return str(digests[0]) if digests else str(image.id)
