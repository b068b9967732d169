"""Ray started in the background while a sweep prepares: joined by connect(), errors kept clean."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest
import ray

from sweeper.cluster.connect import connect, connect_in_background, shutdown
from sweeper.errors import ClusterError


@pytest.fixture
def no_ray() -> Iterator[None]:
    """No Ray in this process before the test, none after it."""
    shutdown()
    yield
    shutdown()


@ray.remote
def _pid() -> int:
    return os.getpid()


def _closed_port_address() -> str:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def test_a_background_start_is_joined_and_outlives_its_thread(no_ray: None) -> None:
    connect_in_background(None)
    connect_in_background(None)  # a second call while one runs starts nothing more
    info = connect(None)
    assert info.embedded
    assert info.largest("CPU") >= 1
    # Ray kills its processes when the thread that started them ends (PR_SET_PDEATHSIG):
    # a task runs only if the start's thread still holds them
    assert ray.get(_pid.remote(), timeout=120) != os.getpid()
    assert connect(None) == info  # Ray is up: joined, not started again
    shutdown()
    assert not ray.is_initialized()


def test_a_failed_background_start_raises_from_connect_then_lets_a_new_start_run(
    no_ray: None,
) -> None:
    address = _closed_port_address()
    connect_in_background(address)
    with pytest.raises(ClusterError, match=f"could not reach the Ray cluster at {address}"):
        connect(address)
    assert not ray.is_initialized()
    # the failed start is not kept: the next one starts Ray
    connect_in_background(None)
    assert connect(None).embedded
    assert ray.get(_pid.remote(), timeout=120) != os.getpid()
