"""What the suite needs from the machine, checked one way for every module.

The project's rule: a test never skips because a tool is missing. A missing Docker daemon,
test image, moto or Chromium fails the test with a message that says how to get it
(``bash scripts/test`` installs and starts all of them). Only a missing GPU may skip.
"""

from __future__ import annotations

import importlib
import shutil
from types import ModuleType
from typing import Any, NoReturn

import pytest

#: The offline images ``scripts/build-test-images`` builds; the Docker tests run only these.
TEST_IMAGES = ("sweeper-test/busybox:latest", "sweeper-test/python:latest")

HOW = "run the suite with `bash scripts/test`, which installs and starts what it needs"


def missing(what: str, detail: object = "") -> NoReturn:
    """Fail the running test: ``what`` is missing, and how to get it."""
    suffix = f" ({detail})" if detail else ""
    pytest.fail(f"{what} is missing{suffix}: {HOW}", pytrace=False)


def require_docker() -> Any:
    """A client of a running Docker daemon that has the offline test images."""
    # the failure is reported outside the except blocks, so it is one line, not a chain
    problem: Exception | None = None
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any SDK or socket failure means "no daemon"
        problem = exc
    if problem is not None:
        missing("a running Docker daemon", problem)
    for image in TEST_IMAGES:
        try:
            client.images.get(image)
        except Exception as exc:  # noqa: BLE001
            problem = exc
        if problem is not None:
            missing(f"the test image {image} (scripts/build-test-images)", problem)
    return client


def require_module(name: str, package: str | None = None) -> ModuleType:
    """Import ``name`` (from the ``test`` extra); fail rather than skip when it is absent."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing(
            f"the Python package {package or name.split('.')[0]} (pip install -e '.[test]')", exc
        )


def require_moto() -> ModuleType:
    """moto's S3 server module, which the S3 tests run a real server from."""
    require_module("boto3")
    return require_module("moto.server", "moto[server]")


def require_chromium() -> str:
    """The path of a headless Chromium."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    missing("a headless Chromium (Debian's chromium)")
