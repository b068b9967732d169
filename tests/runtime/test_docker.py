"""What only the Docker runtime does: images, limits, isolation, the daemon's view."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from runtime_support import (
    BUSYBOX,
    PYTHON,
    Harness,
    Output,
    containers_labelled,
    containers_left,
    docker_client,
    make_harness,
    stop_on,
)

from sweeper.errors import RuntimeUnavailableError, SweeperError
from sweeper.record import FailureKind
from sweeper.runtime import DockerRuntime, RunRequest, docker_network
from sweeper.runtime.docker import EXECUTION_LABEL
from sweeper.runtime.docker_network import HOLDER_LABEL

pytestmark = pytest.mark.docker


def run_with(harness: Harness, on_started: Any, *commands: str, **options: Any) -> Any:
    """Run, calling ``on_started(container)`` (on another thread) when the step prints 'started'."""
    threads: list[threading.Thread] = []
    output = Output()

    def on_output(line: str) -> None:
        output(line)
        if line == "started":
            (container,) = containers_labelled(harness.execution_id)
            thread = threading.Thread(target=on_started, args=(container,))
            thread.start()
            threads.append(thread)

    result = harness.runtime.run(
        harness.request(*commands, **options), on_output, threading.Event()
    )
    for thread in threads:
        thread.join()
    return result, output


def test_image_digest_is_the_image_run(docker_harness: Harness) -> None:
    result, _ = docker_harness.run("true", image=BUSYBOX)
    assert result.image_digest == docker_client().images.get(BUSYBOX).id
    assert result.host == docker_client().info()["Name"]


def test_the_run_after_resolve_image_runs_the_image_resolved(docker_harness: Harness) -> None:
    # The execution layer records resolve_image's digest: a tag moved before the run
    # starts must not make the record name another image than the one that ran.
    client = docker_client()
    busybox, python = client.images.get(BUSYBOX), client.images.get(PYTHON)
    moving = f"sweeper-test/moving:{docker_harness.execution_id}"
    busybox.tag(moving)
    try:
        digest = docker_harness.runtime.resolve_image(moving, "never")
        python.tag(moving)
        seen: dict[str, Any] = {}
        result, _ = run_with(
            docker_harness,
            lambda container: seen.update(container.attrs),
            "echo started",
            "sleep 1",
            image=moving,
            pull_policy="never",
        )
    finally:
        client.images.remove(moving)
    assert result.status == "complete"
    assert digest == busybox.id
    assert seen["Image"] == busybox.id


def test_cpu_and_memory_limits_reach_the_container(docker_harness: Harness) -> None:
    result, output = docker_harness.run(
        "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
        "cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us",
        image=BUSYBOX,
        cpus=0.5,
        memory_mb=64,
    )
    assert result.status == "complete", output.lines
    assert output.lines[0] == str(64 * 1024 * 1024)
    assert output.lines[1].split()[0] == "50000"


def test_container_is_confined(docker_harness: Harness) -> None:
    seen: dict[str, Any] = {}

    def inspect(container: Any) -> None:
        seen.update(container.attrs)

    result, output = run_with(
        docker_harness,
        inspect,
        "grep -E '^(NoNewPrivs|CapEff)' /proc/self/status",
        "echo started",
        "sleep 1",
        image=BUSYBOX,
    )
    assert result.status == "complete"
    status = dict(line.split(":\t") for line in output.lines[:2])
    assert status["NoNewPrivs"] == "1"
    assert int(status["CapEff"], 16) & (1 << 21) == 0  # no CAP_SYS_ADMIN: not privileged
    host_config = seen["HostConfig"]
    assert host_config["Privileged"] is False
    assert host_config["SecurityOpt"] == ["no-new-privileges"]
    assert [(m["Source"], m["Destination"], m["RW"]) for m in seen["Mounts"]] == [
        (str(docker_harness.workdir.resolve()), "/valohai", True)
    ]
    assert seen["Config"]["Labels"][EXECUTION_LABEL] == docker_harness.execution_id


def test_memory_limit_exceeded_is_reported_as_oom(docker_harness: Harness) -> None:
    result, _ = docker_harness.run(
        "echo allocating", "python3 -c \"x = b'x' * (512 * 1024 * 1024)\"", memory_mb=48
    )
    assert (result.status, result.failure_kind) == ("error", FailureKind.OOM)
    assert result.reason == "killed by the OOM killer (memory limit 48 MB)"


def test_oom_kill_of_a_command_the_step_survives_is_still_reported(
    docker_harness: Harness,
) -> None:
    # The shell exits 0, yet the cgroup saw an OOM kill: the daemon's verdict stands.
    result, output = docker_harness.run(
        "python3 -c \"x = b'x' * (512 * 1024 * 1024)\" || echo survived", memory_mb=48
    )
    assert output.lines[-1] == "survived"
    assert (result.status, result.exit_code) == ("error", 0)
    assert result.reason == "killed by the OOM killer (memory limit 48 MB)"
    assert result.failure_kind is FailureKind.OOM


def test_container_killed_from_outside(docker_harness: Harness) -> None:
    result, output = run_with(
        docker_harness, lambda container: container.kill(), "echo started", "sleep 30"
    )
    assert result.status == "crashed"
    assert result.reason == "container killed from outside (signal SIGKILL)"
    assert result.exit_code == 137
    assert result.failure_kind is FailureKind.INFRASTRUCTURE


def test_container_removed_from_outside(docker_harness: Harness) -> None:
    result, _ = run_with(
        docker_harness, lambda container: container.remove(force=True), "echo started", "sleep 30"
    )
    assert result.status == "crashed"
    # Removal kills first: whichever the daemon shows us first, the reason blames outsiders.
    assert "from outside" in (result.reason or "")
    assert result.failure_kind is FailureKind.INFRASTRUCTURE


def test_exit_code_137_from_the_step_is_not_blamed_on_outsiders(docker_harness: Harness) -> None:
    result, _ = docker_harness.run("exit 137", image=BUSYBOX)
    assert (result.status, result.exit_code) == ("error", 137)
    assert "outside" not in (result.reason or "")
    assert result.failure_kind is FailureKind.OOM  # the OOM killer's code


def test_a_time_limit_ended_by_sigkill_is_a_time_limit(docker_harness: Harness) -> None:
    # A step that ignores SIGTERM is killed after the grace: exit code 137, the OOM killer's
    # code, yet the runtime knows it ended the step for its time limit.
    result, _ = docker_harness.run(
        "trap '' TERM", "while true; do sleep 0.1; done", image=BUSYBOX, time_limit_s=0.5
    )
    assert (result.status, result.exit_code) == ("error", 137)
    assert result.reason == "time limit of 0.5s exceeded"
    assert result.failure_kind is FailureKind.TIME_LIMIT


def test_outputs_are_given_to_the_host_user(docker_harness: Harness) -> None:
    runtime = DockerRuntime(output_owner=(1234, 2345))
    result = runtime.run(
        docker_harness.request(
            "mkdir $VH_OUTPUTS_DIR/sub", "echo x > $VH_OUTPUTS_DIR/sub/file", image=BUSYBOX
        ),
        Output(),
        threading.Event(),
    )
    assert result.status == "complete"
    stat = (docker_harness.workdir / "outputs" / "sub" / "file").stat()
    assert (stat.st_uid, stat.st_gid) == (1234, 2345)


def test_pull_policy_never_with_a_missing_image(docker_harness: Harness) -> None:
    image = "sweeper-test/does-not-exist:latest"
    with pytest.raises(RuntimeUnavailableError, match=r"does-not-exist.*'never'"):
        docker_harness.run("true", image=image, pull_policy="never")
    with pytest.raises(RuntimeUnavailableError, match="'never'"):
        docker_harness.runtime.resolve_image(image, "never")


def test_pull_failure_is_unavailable(docker_harness: Harness) -> None:
    with pytest.raises(RuntimeUnavailableError, match="cannot pull image 'localhost:1/nope:1'"):
        docker_harness.runtime.resolve_image("localhost:1/nope:1", "missing")


def test_present_image_resolves_without_pulling(docker_harness: Harness) -> None:
    assert (
        docker_harness.runtime.resolve_image(PYTHON, "never")
        == docker_client().images.get(PYTHON).id
    )


def test_unknown_pull_policy(docker_harness: Harness) -> None:
    with pytest.raises(SweeperError, match="'sometimes'"):
        docker_harness.runtime.resolve_image(PYTHON, "sometimes")


def test_unreachable_daemon(tmp_path: Path) -> None:
    runtime = DockerRuntime(base_url=f"unix://{tmp_path}/no-docker.sock")
    expected = (
        rf"not reachable at unix://{tmp_path}/no-docker.sock: start it or use --runtime local"
    )
    with pytest.raises(RuntimeUnavailableError, match=expected):
        runtime.run(RunRequest("e", ("true",), tmp_path, image=BUSYBOX), print, threading.Event())
    with pytest.raises(RuntimeUnavailableError, match=expected):
        runtime.resolve_image(BUSYBOX, "missing")


def test_a_request_without_image_is_refused(docker_harness: Harness) -> None:
    with pytest.raises(SweeperError, match="no image"):
        docker_harness.run("true", image=None)


def test_gpu_request_options(docker_harness: Harness) -> None:
    runtime = DockerRuntime()
    request = docker_harness.request("true", gpu_ids=("2", "5"), cpus=1.5, memory_mb=100)
    options = runtime.container_options(request, "sha256:x", "token")
    (device_request,) = options["device_requests"]
    assert device_request["DeviceIDs"] == ["2", "5"]
    assert device_request["Capabilities"] == [["gpu"]]
    assert options["environment"]["NVIDIA_VISIBLE_DEVICES"] == "2,5"
    assert options["environment"]["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert options["nano_cpus"] == 1_500_000_000
    assert options["mem_limit"] == options["memswap_limit"] == "100m"


def test_gpu_request_on_a_daemon_without_gpus_is_a_crash(docker_harness: Harness) -> None:
    if "nvidia" in docker_client().info().get("Runtimes", {}):
        pytest.skip("this daemon has the NVIDIA runtime")
    result, _ = docker_harness.run("true", image=BUSYBOX, gpu_ids=("0",))
    assert (result.status, result.failure_kind) == ("crashed", FailureKind.INFRASTRUCTURE)
    assert "gpu" in (result.reason or "").lower()


def test_a_stopped_container_is_removed(
    workdir: Path, execution_id: str, no_leftovers: None
) -> None:
    harness = make_harness("docker", workdir, execution_id, stop_grace_s=0.5)
    stop = threading.Event()  # set once the container runs and has printed
    result = harness.runtime.run(
        harness.request("echo started", "sleep 30", image=BUSYBOX),
        stop_on("started", stop, Output()),
        stop,
    )
    assert result.status == "stopped"
    assert containers_left(execution_id) == []


def holders(label: str) -> list[Any]:
    return docker_client().containers.list(
        all=True, filters={"label": f"{HOLDER_LABEL}={label}"}, sparse=True
    )


NETWORK = "cat /proc/net/dev | grep -c eth0; hostname"


def test_consecutive_runs_share_one_bridge_network(docker_harness: Harness) -> None:
    runtime = docker_harness.runtime
    assert isinstance(runtime, DockerRuntime) and runtime.network is not None
    first, first_output = docker_harness.run(NETWORK, image=BUSYBOX)
    second, second_output = docker_harness.run(NETWORK, image=BUSYBOX)
    assert first.status == second.status == "complete"
    assert first_output.lines[0] == "1"  # a bridge interface, not just loopback
    assert first_output.lines == second_output.lines  # the same namespace
    (holder,) = holders(runtime.network.label)
    assert first_output.lines[1] == holder.id[:12]


@pytest.mark.parametrize("opt_out", ["argument", "environment"])
def test_without_a_shared_network_each_run_has_its_own(
    workdir: Path,
    execution_id: str,
    no_leftovers: None,
    opt_out: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if opt_out == "environment":
        monkeypatch.setenv("SWEEPER_DOCKER_SHARE_NETWORK", "0")
        harness = make_harness("docker", workdir, execution_id)
    else:
        harness = make_harness("docker", workdir, execution_id, share_network=False)
    _, first = harness.run(NETWORK, image=BUSYBOX)
    _, second = harness.run(NETWORK, image=BUSYBOX)
    assert first.lines[0] == second.lines[0] == "1"
    assert first.lines[1] != second.lines[1]


def test_a_network_holder_removed_from_outside_is_replaced(docker_harness: Harness) -> None:
    runtime = docker_harness.runtime
    assert isinstance(runtime, DockerRuntime) and runtime.network is not None
    assert docker_harness.run("true", image=BUSYBOX)[0].status == "complete"
    (holder,) = holders(runtime.network.label)
    docker_client().containers.get(holder.id).remove(force=True)
    result, output = docker_harness.run("echo still here", image=BUSYBOX)
    assert (result.status, output.lines) == ("complete", ["still here"])
    assert docker_harness.run("true", image=BUSYBOX)[0].status == "complete"
    assert [h.id for h in holders(runtime.network.label)] not in ([], [holder.id])


KILLED_RUNNER = """
import os, signal, sys, threading
from pathlib import Path
from sweeper.runtime import DockerRuntime, RunRequest
runtime = DockerRuntime()
request = RunRequest(sys.argv[1], ("true",), Path(sys.argv[2]), image=sys.argv[3])
result = runtime.run(request, lambda line: None, threading.Event())
print(result.status, runtime.network.label, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_network_holders_end_with_a_killed_runner(
    workdir: Path, execution_id: str, docker_available: None
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_RUNNER, execution_id, str(workdir), BUSYBOX],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    status, label = proc.stdout.split()
    assert status == "complete"
    deadline = time.monotonic() + 60
    while holders(label) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert holders(label) == []


def test_a_holder_left_created_by_a_killed_runner_is_removed(
    docker_harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a runner killed between creating a holder and starting it leaves.
    left = docker_client().containers.create(
        BUSYBOX, ["true"], labels={HOLDER_LABEL: docker_harness.execution_id}
    )
    monkeypatch.setattr(docker_network, "STALE_CREATED_S", 0.0)
    assert docker_harness.run("true", image=BUSYBOX)[0].status == "complete"
    assert holders(docker_harness.execution_id) == [], left.id
