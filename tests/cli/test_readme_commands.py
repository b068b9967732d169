"""Every command README.md shows in a ```console block runs, exactly as written.

The commands are read from README.md itself (lines starting with ``$ ``), so a command added
to the README is tested without touching this file. Each block runs, in order, in a fresh
copy of the example project (``cd configs`` moves into it) through a real shell and the
real ``sweep`` command of this checkout; where the README shows output, the output must have
that shape: the same words, with ids, hashes and numbers free, and JSON lines with the same
keys. Commands that need a cluster (``--address``) run in their own test, against a real
Ray head with fake GPUs; Docker commands run in the real daemon.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sweeper.store import Store
from tests.conftest import EXAMPLE, REPO

README = REPO / "README.md"

#: A command that needs a running Ray cluster (and GPUs) rather than the embedded Ray.
CLUSTER = re.compile(r"(^|\s)--address(\s|=)")
#: What the README's comments promise beyond the output it shows, keyed by the command.
PROMISES = {"--reuse": "(reused "}
#: Generous: a sweep of 50 trials on a loaded 2-core machine takes a few minutes.
TIMEOUT_S = 900


@dataclass
class Command:
    """One ``$ `` line of a console block and the output lines the README shows under it."""

    line: str
    expected: list[str] = field(default_factory=list)

    @property
    def needs_cluster(self) -> bool:
        """Joins a running cluster: run by ``test_cluster_commands``, not in the block."""
        return bool(CLUSTER.search(self.line))

    @property
    def uses_docker(self) -> bool:
        """Runs in a container (the real daemon, the offline test images)."""
        return "--runtime docker" in self.line


@dataclass
class Block:
    """A ```console block: the heading it is under and its commands in order."""

    heading: str
    commands: list[Command]


def console_blocks(text: str) -> list[Block]:
    """The ```console blocks of a Markdown text (```bash and others are not commands to run)."""
    blocks: list[Block] = []
    heading = "top"
    lines = iter(text.splitlines())
    for line in lines:
        if line.startswith("```") and line.strip() != "```console":
            for inner in lines:  # another language's block: its `# ...` lines are no headings
                if inner.strip() == "```":
                    break
            continue
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if line.strip() != "```console":
            continue
        commands: list[Command] = []
        for inner in lines:
            if inner.strip() == "```":
                break
            if inner.startswith("$ "):
                commands.append(Command(inner[2:].strip()))
            elif commands and inner.strip():
                commands[-1].expected.append(inner)
        blocks.append(Block(heading, commands))
    return blocks


BLOCKS = console_blocks(README.read_text())

_ULID = r"[0-9A-HJKMNP-TV-Z]{26}"
_NUMBER = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
# What varies from run to run, as the README writes it -> what the output must have there.
_VARIABLE = [
    (re.compile(r"01M8\.\.\."), _ULID),  # an id the README abbreviates
    (re.compile(r"\{\.\.\.\}|\.\.\."), r".*"),
    (re.compile(r"\b[0-9a-f]{64}\b"), r"[0-9a-f]{64}"),
    (re.compile(rf"\b{_ULID}\b"), _ULID),
    (re.compile(_NUMBER), _NUMBER),
    (re.compile(r"\s+"), r"\s+"),
]


def line_shape(expected: str) -> re.Pattern[str]:
    """A pattern for an output line shaped like ``expected`` (ids, hashes, numbers free)."""
    pattern, i = "", 0
    text = expected.strip()
    while i < len(text):
        for token, replacement in _VARIABLE:
            match = token.match(text, i)
            if match and match.end() > i:
                pattern += replacement
                i = match.end()
                break
        else:
            pattern += re.escape(text[i])
            i += 1
    return re.compile(pattern)


def json_shape(expected: str) -> Any:
    """The README's JSON line with ``{...}`` as "an object with any keys", or None if not JSON."""
    text = expected.strip()
    if not text.startswith("{"):
        return None
    try:
        return json.loads(text.replace("{...}", "{}"))
    except json.JSONDecodeError:
        return None


def json_matches(shape: Any, actual: Any) -> bool:
    """``actual`` has every key of ``shape`` with a value of the same kind, recursively."""
    if isinstance(shape, dict):
        return isinstance(actual, dict) and all(
            key in actual and json_matches(value, actual[key]) for key, value in shape.items()
        )
    if isinstance(shape, str):
        return isinstance(actual, str)
    if isinstance(shape, bool) or shape is None:
        return actual == shape
    if isinstance(shape, (int, float)):
        return isinstance(actual, (int, float)) and not isinstance(actual, bool)
    return bool(actual == shape)


def matches(expected: str, line: str) -> bool:
    """``line`` of the output has the shape of the README's ``expected`` line."""
    shape = json_shape(expected)
    if shape is not None:
        try:
            return json_matches(shape, json.loads(line))
        except json.JSONDecodeError:
            return False
    return line_shape(expected).fullmatch(line.strip()) is not None


def unmatched(expected: list[str], output: str) -> list[str]:
    """The README lines no distinct line of ``output`` has the shape of.

    stdout and stderr interleave differently from run to run, so the order is free; each
    output line stands for one README line at most (three epoch lines need three).
    """
    lines = [line for line in output.splitlines() if line.strip()]
    used: set[int] = set()
    missing = []
    for want in expected:
        found = next(
            (i for i, line in enumerate(lines) if i not in used and matches(want, line)), None
        )
        if found is None:
            missing.append(want)
        else:
            used.add(found)
    return missing


@pytest.fixture(scope="module")
def shell_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """PATH with a ``sweep`` that runs this checkout with this Python (as an install would)."""
    bin_dir = tmp_path_factory.mktemp("bin")
    shim = bin_dir / "sweep"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m sweeper.cli.main "$@"\n')
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def fresh_example(root: Path) -> Path:
    """A private copy of the example project, as a user has after cloning: ``configs`` in it."""
    dest = root / "configs"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns(".sweeper", "__pycache__"))
    return root


def run_line(line: str, cwd: Path, env: dict[str, str]) -> tuple[Path, str]:
    """Run one README line in bash; ``cd`` moves the folder the next lines run in."""
    words = shlex.split(line, comments=True)
    if words and words[0] == "cd":
        target = (cwd / words[1]).resolve()
        assert target.is_dir(), f"README: `{line}` names a missing folder"
        return target, ""
    proc = subprocess.run(
        ["bash", "-c", line],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode == 0, f"README: `{line}` exited {proc.returncode}:\n{proc.stdout}"
    return cwd, proc.stdout


def check_output(command: Command, output: str) -> None:
    """The output has the shape the README shows, and keeps what its comment promises."""
    missing = unmatched(command.expected, output)
    assert not missing, (
        f"README: `{command.line}` printed no line shaped like:\n"
        + "\n".join(missing)
        + f"\n--- it printed:\n{output}"
    )
    for flag, promise in PROMISES.items():
        if flag in shlex.split(command.line, comments=True):
            assert promise in output, f"`{command.line}`: expected {promise!r} in:\n{output}"


def _block_id(block: Block) -> str:
    return re.sub(r"\W+", "-", block.heading.lower()).strip("-")


def test_the_readme_has_console_blocks_to_run() -> None:
    assert {"One execution", "Sweeps", "Pipelines"} <= {b.heading for b in BLOCKS}
    assert all(b.commands and b.commands[0].line == "cd configs" for b in BLOCKS)
    # the extraction is what the README shows: the sweep status line with its JSON under it
    status = next(c for b in BLOCKS for c in b.commands if c.line == "sweep status --json")
    assert len(status.expected) == 1
    assert set(json_shape(status.expected[0])) == {"sweep_id", "trials", "best"}
    first = next(c for b in BLOCKS for c in b.commands if c.line.startswith("sweep run"))
    assert any(line.strip().startswith("metrics:") for line in first.expected)


def test_shapes_tell_a_matching_line_from_another() -> None:
    metrics = "  metrics: epoch=3, loss=0.600125, accuracy=0.64"
    assert matches(metrics, "  metrics: epoch=10, loss=1.5e-05, accuracy=1")
    assert not matches(metrics, "  metrics: epoch=3, loss=0.6")
    done = "execution #1 01M8BAYZE76BKC8GJYF30F1ASB: complete in 0.33s"
    assert matches(done, "execution #12 01M8N70QFYX1VGBYQMHTWQY058: complete in 1.20s")
    assert not matches(done, "execution #12 01M8N70QFYX1VGBYQMHTWQY058: error in 1.20s")
    summary = '{"sweep_id": "01M8...", "trials": {"complete": 20}, "best": {...}}'
    assert matches(summary, '{"sweep_id": "x", "trials": {"complete": 3}, "best": {"a": 1}}')
    assert not matches(summary, '{"sweep_id": "x", "trials": {"complete": 3}, "best": null}')
    assert not matches(summary, '{"sweep_id": "x", "best": {}}')
    assert unmatched([metrics, metrics], metrics) == [metrics]


@pytest.mark.ray
@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("block", BLOCKS, ids=_block_id)
def test_console_block_runs_as_written(block: Block, tmp_path: Path, shell_env: dict) -> None:
    cwd = fresh_example(tmp_path)
    ran = []
    for command in block.commands:
        if command.needs_cluster:
            continue  # test_cluster_commands runs it against a real head
        cwd, output = run_line(command.line, cwd, shell_env)
        check_output(command, output)
        ran.append(command.line)
    assert ran, f"nothing to run in the README block under {block.heading!r}"


CLUSTER_COMMANDS = [c for b in BLOCKS for c in b.commands if c.needs_cluster]


def real_gpus() -> int:
    """How many NVIDIA GPUs this machine has (0 without a driver)."""
    if shutil.which("nvidia-smi") is None:
        return 0
    proc = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return proc.stdout.count("GPU ") if proc.returncode == 0 else 0


@contextlib.contextmanager
def ray_head(num_gpus: int | None) -> Iterator[str]:
    """A real Ray head (2 CPUs; ``num_gpus`` fake GPUs, or None for the real ones)."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    args: dict[str, Any] = {"num_cpus": 2, "include_dashboard": False}
    if num_gpus is not None:
        args["num_gpus"] = num_gpus
    cluster = Cluster(initialize_head=True, connect=False, head_node_args=args)
    try:
        yield str(cluster.address)
    finally:
        cluster.shutdown()


def run_on_cluster(command: Command, line: str, head: str, root: Path, env: dict) -> None:
    """Run a cluster command of the README in a fresh example project on ``head``."""
    # `--address auto` finds the cluster through RAY_ADDRESS, as on a node of a real cluster
    cwd = fresh_example(root) / "configs"
    _, output = run_line(line, cwd, {**env, "RAY_ADDRESS": head})
    check_output(command, output)
    rows = Store.open(cwd / ".sweeper").read_dataset("executions").to_pylist()
    assert rows and {r["status"] for r in rows} == {"complete"}, output
    words = shlex.split(line, comments=True)
    if "--trials" in words:
        assert len(rows) == int(words[words.index("--trials") + 1])
    if "--gpus-per-trial" in words:
        # every trial held a GPU of the head: the id Ray gave it is in its record
        for row in rows:
            gpu_ids = row["gpu_ids"]
            gpu_ids = json.loads(gpu_ids) if isinstance(gpu_ids, str) else gpu_ids
            assert [str(g) for g in gpu_ids] == ["0"], row


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("command", CLUSTER_COMMANDS, ids=lambda c: c.line.split("#")[0].strip())
def test_cluster_commands_on_fake_gpus(command: Command, tmp_path: Path, shell_env: dict) -> None:
    """The cluster part of each cluster command: trials placed on a head's (fake) GPUs.

    A fake GPU cannot go into a container, so the trials run as local processes here;
    test_cluster_commands_as_written runs the line unchanged where a real GPU is.
    """
    line = command.line.split("#")[0].strip()
    if "--runtime" not in line:
        line += " --runtime local"
    with ray_head(num_gpus=1) as head:
        run_on_cluster(command, line, head, tmp_path, shell_env)


@pytest.mark.ray
@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("command", CLUSTER_COMMANDS, ids=lambda c: c.line.split("#")[0].strip())
def test_cluster_commands_as_written(command: Command, tmp_path: Path, shell_env: dict) -> None:
    """Each cluster command exactly as written, in Docker on this machine's real GPUs."""
    if "--gpus-per-trial" in command.line and real_gpus() == 0:
        pytest.skip("needs an NVIDIA GPU (and Docker's GPU support): none on this machine")
    with ray_head(num_gpus=None) as head:
        run_on_cluster(command, command.line, head, tmp_path, shell_env)


def test_every_cluster_command_is_run_by_the_cluster_tests() -> None:
    assert CLUSTER_COMMANDS, "the README shows a cluster sweep: the cluster tests run it"
    assert [c.line for c in CLUSTER_COMMANDS] == [
        c.line for b in BLOCKS for c in b.commands if "--address" in c.line
    ]
