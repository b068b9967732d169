"""get_runtime: names to runtimes."""

from __future__ import annotations

import pytest

from sweeper.errors import SweeperError
from sweeper.runtime import DockerRuntime, LocalRuntime, get_runtime


def test_known_names() -> None:
    assert isinstance(get_runtime("local"), LocalRuntime)
    assert isinstance(get_runtime("docker"), DockerRuntime)
    assert get_runtime("docker").name == "docker"


def test_unknown_name_names_the_choices() -> None:
    with pytest.raises(SweeperError, match=r"'podman'.*docker, local"):
        get_runtime("podman")
