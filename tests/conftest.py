"""Shared fixtures: a copy of the bundled example project, a store, a real local Ray."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from tests.requirements import require_docker

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# A test's sweep never joins a head someone else started (the Ray heads of these fixtures,
# another test session's, a developer's `sweep up`): without --address it starts its own
# embedded Ray; and each test has a SWEEPER_HOME of its own (private_sweeper_home). A test
# that wants a warm head sets both itself.
os.environ.setdefault("SWEEPER_REUSE_RAY", "0")

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "configs"


@pytest.fixture(autouse=True)
def private_sweeper_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test its own SWEEPER_HOME: a head.json one test leaves is never another's head."""
    path = tempfile.mkdtemp(prefix="sh", dir="/tmp")  # short: Ray's socket paths live in it
    monkeypatch.setenv("SWEEPER_HOME", path)
    yield
    shutil.rmtree(path, ignore_errors=True)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked ``docker`` fails up front, with what to do, when Docker is not ready."""
    if item.get_closest_marker("docker") is not None:
        require_docker()


@pytest.fixture
def example_project(tmp_path: Path) -> Path:
    """A private copy of configs/ (the bundled example project), outside git."""
    dest = tmp_path / "project"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns(".sweeper", "__pycache__"))
    return dest


@pytest.fixture
def make_project(tmp_path: Path):
    """Write a project folder from a valohai.yaml text and extra files."""

    def make(yaml_text: str, files: dict[str, str] | None = None, name: str = "proj") -> Path:
        root = tmp_path / name
        root.mkdir(parents=True, exist_ok=True)
        (root / "valohai.yaml").write_text(yaml_text)
        for rel, text in (files or {}).items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return root

    return make


@contextmanager
def ray_head_cluster(num_cpus: int) -> Iterator[str]:
    """A real Ray head with ``num_cpus`` logical CPUs; yields the address drivers join."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={"num_cpus": num_cpus, "include_dashboard": False},
    )
    try:
        yield str(cluster.address)
    finally:
        cluster.shutdown()


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    """A real Ray head (4 logical CPUs) that sweep drivers in subprocesses join with --address.

    Starting an embedded Ray costs ~10 s on a small machine; joining a running head ~1 s,
    which is what lets the suite kill and resume drivers many times.
    """
    with ray_head_cluster(4) as address:
        yield address


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A real local Ray (4 logical CPUs, 2 fake GPUs) shared by one test module."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=4, num_gpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def no_ray_left() -> Iterator[None]:
    """Stop the Ray a test started in this process (the Python API starts an embedded one and
    keeps it until the process ends), and fail if anything of it is left after the stop.

    Otherwise the next test, in this pytest process, finds a Ray it did not ask for. Only the
    processes this test started are looked at (a module's Ray head is older).
    """
    import psutil
    import ray

    from sweeper.cluster.connect import shutdown

    me = psutil.Process()
    before = {child.pid for child in me.children()}
    yield
    started = [child for child in me.children() if child.pid not in before]
    tree = list(started)
    for child in started:
        with suppress(psutil.Error):  # gone already
            tree.extend(child.children(recursive=True))
    shutdown()
    assert not ray.is_initialized(), "Ray is still initialized in the test process"
    _, alive = psutil.wait_procs(tree, timeout=60)
    left = []
    for process in alive:
        with suppress(psutil.Error):  # a zombie is ended, its parent has not reaped it yet
            if process.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{process.pid} {' '.join(process.cmdline())[:120]}")
    assert not left, "processes of the test's Ray outlived ray.shutdown():\n" + "\n".join(left)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the kernel's pick)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def sweep_cli(
    *args: str,
    cwd: Path | None = None,
    timeout: float = 300,
    env: dict[str, str] | None = None,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run the real ``sweep`` command in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "sweeper.cli.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"sweep {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``sweep`` in this process (sharing its Ray); return (exit code, stdout, stderr)."""
    from sweeper.cli.main import main

    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
