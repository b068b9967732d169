"""The runtime contract, checked the same way in the local and the Docker runtime."""

from __future__ import annotations

import shlex
import threading
from datetime import timezone

import pytest
from runtime_support import (
    PYTHON,
    Harness,
    Output,
    containers_labelled,
    containers_left,
    docker_client,
    make_harness,
    process_alive,
    stop_on,
)

from sweeper.record import FailureKind
from sweeper.runtime.base import RunResult
from sweeper.runtime.docker import EXECUTION_LABEL


def assert_ended(harness: Harness) -> None:
    """Nothing of the step runs on: its process (local) or its container (Docker) is gone.

    The step wrote its pid to outputs/pid; in Docker that pid is inside the container, and the
    ``no_leftovers`` fixture checks that no container of the execution is left.
    """
    if harness.runtime.name == "local":
        assert not process_alive(int((harness.workdir / "outputs" / "pid").read_text()))
    else:
        assert containers_left(harness.execution_id) == []


def test_exit_code_zero_is_complete(harness: Harness) -> None:
    result, output = harness.run("echo hello")
    assert (result.status, result.exit_code, result.reason) == ("complete", 0, None)
    assert result.failure_kind is None
    assert output.lines == ["hello"]
    assert result.started_at.tzinfo == timezone.utc
    assert result.started_at <= result.ended_at
    assert result.host


def test_non_zero_exit_code_is_error(harness: Harness) -> None:
    result, _ = harness.run("exit 3")
    assert (result.status, result.exit_code, result.reason) == ("error", 3, "exit code 3")
    assert result.failure_kind is FailureKind.USER_ERROR


def test_first_failing_command_stops_the_rest(harness: Harness) -> None:
    result, output = harness.run("echo a", "(exit 7)", "echo b")
    assert (result.status, result.exit_code) == ("error", 7)
    assert output.lines == ["a"]


def test_blank_lines_and_an_unterminated_last_line_arrive_as_printed(harness: Harness) -> None:
    # In Docker the shell's own exit line follows the output: none of it may show.
    result, output = harness.run("printf 'a\\n\\n\\nb\\n\\n'", "printf 'last'")
    assert result.status == "complete"
    assert output.lines == ["a", "", "", "b", "", "last"]
    result, output = harness.run("printf 'a\\n\\n'", "exit 4")
    assert (result.status, result.exit_code) == ("error", 4)
    assert output.lines == ["a", ""]


def test_stdout_and_stderr_are_merged_in_order(harness: Harness) -> None:
    result, output = harness.run("echo 1; echo 2 >&2; echo 3; echo 4 >&2")
    assert result.status == "complete"
    assert output.lines == ["1", "2", "3", "4"]


def test_output_is_delivered_while_the_step_runs(harness: Harness) -> None:
    # The step waits for a file that only the output callback creates: it can only finish
    # if "first" reached us before the step ended.
    flag = harness.workdir / "outputs" / "flag"
    lines: list[str] = []

    def on_output(line: str) -> None:
        lines.append(line)
        if line == "first":
            flag.touch()

    request = harness.request(
        "echo first",
        'while [ ! -f "$VH_OUTPUTS_DIR/flag" ]; do sleep 0.01; done',
        "echo second",
        time_limit_s=10,
    )
    result = harness.runtime.run(request, on_output, threading.Event())
    assert result.status == "complete", result.reason
    assert lines == ["first", "second"]


STEP_SCRIPT = """\
test "$(pwd)" = "$VH_REPOSITORY_DIR"
echo "repository=$VH_REPOSITORY_DIR"
echo "inputs=$VH_INPUTS_DIR"
echo "outputs=$VH_OUTPUTS_DIR"
echo "config=$VH_CONFIG_DIR"
echo "execution=$VH_EXECUTION_ID job=$VH_JOB_ID"
cat "$VH_INPUTS_DIR/data.txt" "$VH_CONFIG_DIR/settings.txt" > "$VH_OUTPUTS_DIR/copy.txt"
mkdir -p "$VH_OUTPUTS_DIR/sub" && echo nested > "$VH_OUTPUTS_DIR/sub/file.txt"
"""


def test_vh_variables_point_at_the_work_folder(harness: Harness) -> None:
    (harness.workdir / "repository" / "step.sh").write_text(STEP_SCRIPT)
    (harness.workdir / "inputs" / "data.txt").write_text("data\n")
    (harness.workdir / "config" / "settings.txt").write_text("settings\n")
    result, output = harness.run("sh -e step.sh", job_id="job-1")
    assert result.status == "complete", output.lines
    mount = harness.mount
    assert output.lines == [
        f"repository={mount}/repository",
        f"inputs={mount}/inputs",
        f"outputs={mount}/outputs",
        f"config={mount}/config",
        f"execution={harness.execution_id} job=job-1",
    ]
    assert (harness.workdir / "outputs" / "copy.txt").read_text() == "data\nsettings\n"
    nested = harness.workdir / "outputs" / "sub" / "file.txt"
    assert nested.read_text() == "nested\n"
    nested.unlink()  # the host user can remove what the step wrote


def test_user_environment_and_job_id_default(harness: Harness) -> None:
    value = 'it\'s $HOME `id` "quoted" ünïcode'
    result, output = harness.run(
        'printf "%s\\n" "$GREETING" "$VH_EXECUTION_ID" "$VH_JOB_ID" "$PYTHONUNBUFFERED"',
        environment={"GREETING": value, "VH_EXECUTION_ID": "spoofed"},
    )
    assert result.status == "complete"
    assert output.lines == [value, harness.execution_id, harness.execution_id, "1"]


def test_shell_metacharacters_in_a_quoted_argument_are_not_run(harness: Harness) -> None:
    hostile = "$(touch pwned1); `touch pwned2`; touch pwned3 && echo x | cat > pwned4 # '\""
    result, output = harness.run(f"printf '%s\\n' {shlex.quote(hostile)}")
    assert result.status == "complete"
    assert output.lines == [hostile]
    assert list((harness.workdir / "repository").iterdir()) == []


def test_binary_garbage_and_a_megabyte_line(harness: Harness) -> None:
    code = (
        "import sys; out = sys.stdout.buffer; "
        "out.write(bytes(range(256)) * 4 + b'\\n'); "
        "out.write(b'a' * 1_000_000 + b'\\n'); "
        "out.write(b'\\xff\\xfe\\x00end\\n'); out.flush()"
    )
    result, output = harness.run(f"{harness.python} -c {shlex.quote(code)}")
    assert result.status == "complete", result.reason
    assert output.lines[-1] == "\ufffd\ufffd\x00end"
    long_chunks = [line for line in output.lines if set(line) == {"a"}]
    assert sum(map(len, long_chunks)) == 1_000_000
    assert len(long_chunks) >= 15
    assert max(len(line.encode()) for line in output.lines) <= 64 * 1024


def test_time_limit(harness: Harness) -> None:
    result, output = harness.run(
        "echo started",
        "sleep 30 & echo $! > $VH_OUTPUTS_DIR/pid; wait",
        "echo never",
        time_limit_s=0.5,
    )
    assert (result.status, result.reason) == ("error", "time limit of 0.5s exceeded")
    assert result.failure_kind is FailureKind.TIME_LIMIT
    assert output.lines[0] == "started"
    assert "never" not in output.lines  # a shell may report "Terminated"
    assert_ended(harness)


def test_no_output_timeout(harness: Harness) -> None:
    result, _ = harness.run(
        "echo started", "sleep 30 & echo $! > $VH_OUTPUTS_DIR/pid; wait", no_output_timeout_s=0.5
    )
    assert (result.status, result.reason) == ("error", "no output for 0.5s")
    assert result.failure_kind is FailureKind.NO_OUTPUT
    assert_ended(harness)


def test_steady_output_keeps_the_no_output_timeout_away(harness: Harness) -> None:
    result, output = harness.run(
        "for i in 1 2 3 4 5 6 7 8; do echo $i; sleep 0.15; done", no_output_timeout_s=0.6
    )
    assert result.status == "complete", result.reason
    assert len(output.lines) == 8


def test_stop_event(harness: Harness) -> None:
    stop = threading.Event()
    output = Output()
    result = harness.runtime.run(
        harness.request(
            "sleep 30 & echo $! > $VH_OUTPUTS_DIR/pid", "echo started", "wait", "echo never"
        ),
        stop_on("started", stop, output),
        stop,
    )
    assert (result.status, result.reason) == ("stopped", "stopped")
    assert output.lines[0] == "started"
    assert "never" not in output.lines
    assert_ended(harness)


def test_stop_reaches_the_step_gracefully(harness: Harness) -> None:
    # A long grace period: the step ends by its own SIGTERM handler, not by a SIGKILL.
    runtime = make_harness(
        harness.runtime.name, harness.workdir, harness.execution_id, stop_grace_s=20
    ).runtime
    code = (
        "import os, signal, sys, time\n"
        "def bye(*_):\n"
        "    open(os.environ['VH_OUTPUTS_DIR'] + '/bye', 'w').write('bye')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('started')\n"
        "time.sleep(30)\n"
    )
    stop = threading.Event()
    result = runtime.run(
        harness.request(f"{harness.python} -c {shlex.quote(code)}"),
        stop_on("started", stop, Output()),
        stop,
    )
    assert result.status == "stopped"
    assert (harness.workdir / "outputs" / "bye").read_text() == "bye"


def test_step_ignoring_sigterm_is_killed_after_the_grace_period(harness: Harness) -> None:
    # The step notes the SIGTERM, ignores it and would write `survived` 30 s later.
    code = (
        "import os, signal, time\n"
        "out = os.environ['VH_OUTPUTS_DIR']\n"
        "open(out + '/pid', 'w').write(str(os.getpid()))\n"
        "signal.signal(signal.SIGTERM, lambda *_: open(out + '/term', 'w').write('term'))\n"
        "print('started', flush=True)\n"
        "time.sleep(30)\n"
        "open(out + '/survived', 'w').write('survived')\n"
    )
    stop = threading.Event()
    result = harness.runtime.run(
        harness.request(f"{harness.python} -c {shlex.quote(code)}"),
        stop_on("started", stop, Output()),
        stop,
    )
    outputs = harness.workdir / "outputs"
    assert result.status == "stopped"
    assert (outputs / "term").read_text() == "term"  # SIGTERM came first...
    assert not (outputs / "survived").exists()  # ...then the kill, long before 30 s
    assert_ended(harness)


def test_stop_set_before_the_run_runs_nothing(harness: Harness) -> None:
    stop = threading.Event()
    stop.set()
    result, _ = harness.run("touch $VH_OUTPUTS_DIR/ran", stop=stop)
    assert result.status == "stopped"
    assert not (harness.workdir / "outputs" / "ran").exists()


def test_exception_in_on_output_propagates_and_leaves_nothing_running(harness: Harness) -> None:
    def on_output(line: str) -> None:
        raise KeyboardInterrupt(f"Ctrl-C at {line!r}")

    request = harness.request(
        "sleep 30 & echo $! > $VH_OUTPUTS_DIR/pid", "echo started", "wait", time_limit_s=20
    )
    with pytest.raises(KeyboardInterrupt, match="^Ctrl-C at 'started'$"):  # on_output's own
        harness.runtime.run(request, on_output, threading.Event())
    assert_ended(harness)


def test_result_is_a_run_result(harness: Harness) -> None:
    result, _ = harness.run("true")
    assert isinstance(result, RunResult)
    if harness.runtime.name == "docker":
        assert result.image_digest and result.image_digest.startswith("sha256:")
    else:
        assert result.image_digest is None


def test_workdir_root_is_where_the_step_sees_its_work_folder(harness: Harness) -> None:
    result, output = harness.run('echo "$VH_INPUTS_DIR"')
    assert result.status == "complete"
    root = harness.runtime.workdir_root(harness.workdir.resolve())
    assert root == harness.mount
    assert output.lines == [f"{root}/inputs"]


def test_uses_images_says_whether_the_image_counts(harness: Harness) -> None:
    # The execution layer keeps the image in the record and the spec hash only when it counts.
    assert harness.runtime.uses_images is (harness.runtime.name == "docker")
    digest = harness.runtime.resolve_image(PYTHON, "never")
    assert (digest is not None) is harness.runtime.uses_images


def test_remove_leftovers_removes_what_a_dead_runner_left(harness: Harness) -> None:
    if harness.runtime.name == "docker":
        # What a runner killed with its Ray worker leaves: a running, labelled container.
        docker_client().containers.run(
            PYTHON,
            ["sleep", "300"],
            detach=True,
            labels={EXECUTION_LABEL: harness.execution_id},
        )
        assert len(containers_labelled(harness.execution_id)) == 1
        assert harness.runtime.remove_leftovers(harness.execution_id) == 1
        assert containers_labelled(harness.execution_id) == []
    else:
        # A local run's processes end with their runner today: nothing is left to remove.
        assert harness.runtime.remove_leftovers(harness.execution_id) == 0
    assert harness.runtime.remove_leftovers(harness.execution_id) == 0
