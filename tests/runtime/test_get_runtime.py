"""The runtime table: one line in RUNTIMES makes a runtime known to the library and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sweeper import runtime as runtime_package
from sweeper.errors import SweeperError
from sweeper.runtime import (
    RUNTIMES,
    DockerRuntime,
    LocalRuntime,
    Runtime,
    get_runtime,
    runtime_class,
    runtime_names,
)
from tests.conftest import EXAMPLE, sweep_cli


@pytest.mark.parametrize("name", sorted(RUNTIMES))
def test_every_registered_name_makes_its_runtime(name: str) -> None:
    runtime = get_runtime(name)
    assert isinstance(runtime, runtime_class(name))
    assert isinstance(runtime, Runtime)
    # The record's `runtime` field is this name; resume and recovery look the runtime up by it.
    assert runtime.name == name
    assert get_runtime(name) is not runtime  # a new one each time: options are per caller


def test_the_builtin_names_and_their_classes() -> None:
    assert runtime_names() == ["docker", "local"]
    assert runtime_class("local") is LocalRuntime
    assert runtime_class("docker") is DockerRuntime


def test_unknown_name_names_the_choices() -> None:
    with pytest.raises(SweeperError, match=r"unknown runtime 'podman': use one of docker, local$"):
        get_runtime("podman")


class EchoRuntime(LocalRuntime):
    """A runtime registered by a test, as a plug-in would be: its module and one table line."""

    name = "echo"


def test_one_table_line_registers_a_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(RUNTIMES, "echo", f"{__name__}:EchoRuntime")
    assert "echo" in runtime_names()
    assert isinstance(get_runtime("echo"), EchoRuntime)
    with pytest.raises(SweeperError, match=r"use one of docker, echo, local$"):
        get_runtime("podman")


def test_the_cli_offers_the_table_names() -> None:
    proc = sweep_cli("run", "train-model", "--runtime", "podman", cwd=EXAMPLE)
    assert proc.returncode == 2
    assert "'podman' is not one of 'docker', 'local'" in proc.stderr
    assert "Traceback" not in proc.stderr
    # A line added to the table before the CLI loads is a `--runtime` choice, with no CLI edit.
    code = (
        "import sweeper.runtime as r; r.RUNTIMES['echo'] = 'sweeper.runtime.local:LocalRuntime';"
        "from sweeper.cli.main import main; main(['run', '--help'])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=EXAMPLE
    )
    assert proc.returncode == 0, proc.stderr
    assert "[docker|echo|local]" in " ".join(proc.stdout.split())


def test_option_parsing_does_not_import_the_docker_sdk() -> None:
    code = (
        "import json, sys, sweeper.cli.options, sweeper.runtime;"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'docker'"
        " or m == 'sweeper.runtime.docker')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert json.loads(out) == []


def test_the_classes_stay_importable_from_the_package() -> None:
    assert runtime_package.DockerRuntime is DockerRuntime
    with pytest.raises(AttributeError, match="PodmanRuntime"):
        runtime_package.PodmanRuntime  # noqa: B018
