"""Fixtures for the runtime tests: work folders, both runtimes, a real Docker daemon."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from runtime_support import Harness, containers_left, make_harness

from tests.requirements import require_docker


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A work folder laid out as the execution layer lays it out."""
    for folder in ("repository", "inputs", "outputs", "config"):
        (tmp_path / folder).mkdir()
    return tmp_path


@pytest.fixture
def execution_id() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def docker_available() -> None:
    """A daemon with the offline test images; without them the test fails (never skips)."""
    require_docker()


@pytest.fixture
def no_leftovers(execution_id: str) -> Iterator[None]:
    """Fail the test if a container labelled with its execution id survives it."""
    yield
    left = containers_left(execution_id)
    for container in left:
        container.remove(force=True)
    assert not left, f"containers left behind: {[c.name for c in left]}"


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def harness(request: pytest.FixtureRequest, workdir: Path, execution_id: str) -> Harness:
    """The same test in both runtimes; the Docker one checks no container is left behind."""
    if request.param == "docker":
        request.getfixturevalue("docker_available")
        request.getfixturevalue("no_leftovers")
    return make_harness(request.param, workdir, execution_id, stop_grace_s=1.0)


@pytest.fixture
def docker_harness(
    workdir: Path, execution_id: str, docker_available: None, no_leftovers: None
) -> Harness:
    return make_harness("docker", workdir, execution_id, stop_grace_s=1.0)
