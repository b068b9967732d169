"""What only the local runtime does: process groups, inherited environment.

Its speed (per-trial overhead over a bare process pool) is measured by the benchmarks
(`python -m benchmarks --cases overhead`), not asserted here.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from runtime_support import Harness, Output, make_harness, process_alive, stop_on

from sweeper.record import FailureKind
from sweeper.runtime import LocalRuntime, RunRequest


@pytest.fixture
def local(workdir: Path, execution_id: str) -> Harness:
    return make_harness("local", workdir, execution_id, stop_grace_s=1.0)


def read_pid(harness: Harness, name: str = "pid") -> int:
    return int((harness.workdir / "outputs" / name).read_text())


def test_stop_kills_the_whole_process_group(local: Harness) -> None:
    stop = threading.Event()
    result = local.runtime.run(
        local.request("sleep 30 & echo $! > $VH_OUTPUTS_DIR/pid", "echo started", "sleep 30"),
        stop_on("started", stop, Output()),
        stop,
    )
    assert (result.status, result.failure_kind) == ("stopped", None)
    assert result.exit_code == 143  # the shell died of SIGTERM
    assert not process_alive(read_pid(local))


def test_time_limit_kills_a_group_that_ignores_sigterm(local: Harness) -> None:
    result, _ = local.run(
        "trap '' TERM",
        "sleep 30 & echo $! > $VH_OUTPUTS_DIR/pid",
        "sleep 30",
        time_limit_s=0.3,
    )
    assert result.reason == "time limit of 0.3s exceeded"
    # whatever signal ended it (the SIGKILL after the grace is 137, the OOM killer's code)
    assert result.failure_kind is FailureKind.TIME_LIMIT
    assert not process_alive(read_pid(local))


@pytest.mark.parametrize("redirect", ["", " > /dev/null 2>&1"])
def test_background_leftovers_are_killed_when_the_step_ends(local: Harness, redirect: str) -> None:
    # With the pipe still held by the leftover the run must not wait for it either: the
    # leftover is killed, so the run returns long before its 30 s.
    result, output = local.run(f"sleep 30{redirect} & echo $! > $VH_OUTPUTS_DIR/pid", "echo done")
    assert result.status == "complete"
    assert output.lines == ["done"]
    assert not process_alive(read_pid(local))


def test_death_by_signal_names_it(local: Harness) -> None:
    result, _ = local.run("sh -c 'kill -9 $$'")
    assert (result.status, result.exit_code) == ("error", 137)
    assert result.reason == "killed by signal SIGKILL (exit code 137)"
    assert result.failure_kind is FailureKind.OOM  # the OOM killer's signal


def test_the_shell_killed_from_outside_is_a_crash(local: Harness) -> None:
    # What a Ray worker shutting down (its driver killed) does to the step's whole tree.
    result, _ = local.run("kill -9 $$")
    assert (result.status, result.exit_code) == ("crashed", 137)
    assert result.reason == "killed from outside (signal SIGKILL)"
    assert result.failure_kind is FailureKind.INFRASTRUCTURE


def test_inherits_the_parent_environment(local: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWEEPER_TEST_INHERITED", "yes")
    result, output = local.run('echo "$SWEEPER_TEST_INHERITED"', 'test -n "$PATH"')
    assert result.status == "complete"
    assert output.lines == ["yes"]


def test_gpu_ids_become_cuda_visible_devices(local: Harness) -> None:
    result, output = local.run('echo "$CUDA_VISIBLE_DEVICES"', gpu_ids=("2", "3"))
    assert output.lines == ["2,3"]


def test_missing_repository_folder_is_a_crash(tmp_path: Path) -> None:
    request = RunRequest("e", ("true",), tmp_path / "nowhere")
    result = LocalRuntime().run(request, print, threading.Event())
    assert (result.status, result.failure_kind) == ("crashed", FailureKind.INFRASTRUCTURE)
    assert "cannot start" in (result.reason or "")


def test_last_line_without_newline_is_delivered(local: Harness) -> None:
    result, output = local.run("printf 'a\\nb'")
    assert output.lines == ["a", "b"]


def test_resolve_image_is_ignored(local: Harness) -> None:
    assert local.runtime.resolve_image("anything:latest", "never") is None
