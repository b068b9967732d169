"""Every command README.md shows in a ```console block runs, exactly as written.

The commands are read from README.md itself (lines starting with ``$ ``), so a command added
to the README is tested without touching this file. Each block runs, in order, in a fresh
copy of the example project (``cd configs`` moves into it) through a real shell and the
real ``sweep`` command of this checkout; where the README shows output, the output must have
that shape: the same words and counts, with ids, hashes, durations, sizes and measured metric
values free, and JSON lines with the same keys and words. What each command did to the store
is checked too: as many executions as ``--trials N`` (or the grid) asks for, the ``-p`` values
in every trial, what ``--reuse`` answered from, the nodes of a pipeline; the commands that only
read (``status``, ``replay``, ``plot``, ``lineage``, ``pipeline show``) add nothing and report
what the store holds. Commands that need a cluster (``--address``) run in their own test,
against a real Ray head with fake GPUs; Docker commands run in the real daemon.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sweeper.config import Config, load_config
from sweeper.store import Store
from tests.conftest import EXAMPLE, REPO

README = REPO / "README.md"

#: A command that needs a running Ray cluster (and GPUs) rather than the embedded Ray.
CLUSTER = re.compile(r"(^|\s)--address(\s|=)")
#: The plots the README says ``sweep plot`` writes (and ``replay-PRUNER.png`` per ``--replay``).
PLOTS = {"history.png", "importances.png", "parallel_coordinate.png", "slice.png", "top_trials.png"}
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
# Everything else is literal: a count, a counter, an exit code, a rendered parameter value
# ("reused 6" must not pass as "reused 1").
_VARIABLE = [
    (re.compile(r"01M8\.\.\."), _ULID),  # an id the README abbreviates
    (re.compile(r"\{\.\.\.\}|\.\.\."), r".*"),
    (re.compile(r"\b[0-9a-f]{64}\b"), r"[0-9a-f]{64}"),
    (re.compile(rf"\b{_ULID}\b"), _ULID),
    (re.compile(rf"\b{_NUMBER}s\b"), rf"{_NUMBER}s"),  # a duration: "complete in 0.33s"
    (re.compile(r"\b\d+ B\b"), r"\d+ B"),  # a file's size, which its format decides
    (re.compile(r"\s+"), r"\s+"),
]
#: In a ``metrics:`` line a measured value (written with a fraction) is free: another CPU's
#: floating point may print another last digit. A count there (``epoch=3``) is literal.
_MEASURED = (re.compile(r"(?<![\w.])-?\d+\.\d+(?:[eE][-+]?\d+)?"), _NUMBER)


def line_shape(expected: str) -> re.Pattern[str]:
    """A pattern for an output line shaped like ``expected`` (ids, times, measurements free)."""
    pattern, i = "", 0
    text = expected.strip()
    variable = [*_VARIABLE, _MEASURED] if text.startswith("metrics:") else _VARIABLE
    while i < len(text):
        for token, replacement in variable:
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
    """``actual`` has every key of ``shape`` with a value of the same kind, recursively.

    A word is literal (``"status": "complete"``); an abbreviated one (``"01M8..."``) is any
    text. Numbers are of the same kind only: the store checks say which counts are right.
    """
    if isinstance(shape, dict):
        return isinstance(actual, dict) and all(
            key in actual and json_matches(value, actual[key]) for key, value in shape.items()
        )
    if isinstance(shape, str):
        return isinstance(actual, str) and ("..." in shape or actual == shape)
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
    """The output has the shape the README shows."""
    missing = unmatched(command.expected, output)
    assert not missing, (
        f"README: `{command.line}` printed no line shaped like:\n"
        + "\n".join(missing)
        + f"\n--- it printed:\n{output}"
    )


# --------------------------------------------------------------------------- the store


Row = dict[str, Any]


@dataclass
class Ran:
    """One README command after it ran: its words, what it printed, the executions it added."""

    command: Command
    output: str
    added: list[Row]
    env: dict[str, str] = field(default_factory=dict)  # the shell's, to run it again

    @property
    def words(self) -> list[str]:
        return shlex.split(self.command.line, comments=True)

    @property
    def comment(self) -> str:
        """What the README says after ``#`` on the line."""
        return self.command.line.partition(" #")[2].strip()

    def option(self, name: str, default: str | None = None) -> str | None:
        words = self.words
        return words[words.index(name) + 1] if name in words else default

    def specs(self) -> dict[str, str]:
        """The ``-p NAME=SPEC`` of the command."""
        words = self.words
        pairs = [words[i + 1] for i, word in enumerate(words) if word == "-p"]
        return dict(pair.split("=", 1) for pair in pairs)

    def fail(self, what: str) -> str:
        return f"README: `{self.command.line}`: {what}\n--- it printed:\n{self.output}"


def store_rows(project: Path) -> dict[str, Row]:
    """The project's executions by id (none before its first command made the store)."""
    if not (project / ".sweeper").exists():
        return {}
    rows = Store.open(project / ".sweeper").read_dataset("executions").to_pylist()
    return {row["execution_id"]: row for row in rows}


def parameters(row: Row) -> dict[str, Any]:
    return json.loads(row["parameters"])


def fits(spec: str, value: Any) -> bool:
    """``value`` is one that ``-p NAME=SPEC`` allows: in the range, a choice, or the value."""
    body = re.sub(r"^(log|float|int|logint):", "", spec)
    if ".." in body:
        low, high = body.split(":")[0].split("..")
        return float(low) <= float(value) <= float(high)
    return any(_same(choice, value) for choice in body.split(","))


def _same(text: str, value: Any) -> bool:
    try:
        return float(text) == float(value)
    except (TypeError, ValueError):
        return str(value) == text


def grid_size(ran: Ran, config: Config, step: str) -> int:
    """How many trials a sweep without ``--trials`` runs: its task's grid, or the ``-p`` grid."""
    task = ran.option("--task")
    if task is not None:
        return math.prod(len(p.values()) for p in config.tasks[task].parameters)
    assert ran.option("--sampler") == "grid", ran.fail("a sweep without --trials, --task or grid")
    return math.prod(len(spec.split(",")) for spec in ran.specs().values())


def latest_sweep(project: Path) -> tuple[str, list[Row]]:
    """The latest sweep of the store and its executions."""
    sweep_id = Store.open(project / ".sweeper").latest_sweep()
    assert sweep_id is not None
    return sweep_id, [r for r in store_rows(project).values() if r["sweep_id"] == sweep_id]


def check_run(ran: Ran, project: Path, config: Config, earlier: list[Ran]) -> None:
    """``sweep run``: one execution with the ``-p`` values (none for ``--dry-run``)."""
    if "--dry-run" in ran.words:
        assert not ran.added, ran.fail("a dry run recorded an execution")
        return
    assert len(ran.added) == 1, ran.fail(f"{len(ran.added)} executions, not 1")
    (row,) = ran.added
    assert row["status"] == "complete" and row["step"] == ran.words[2], ran.fail(str(row))
    values = parameters(row)
    for name, spec in ran.specs().items():
        assert fits(spec, values[name]), ran.fail(f"{name}={values[name]} is not {spec}")
    runtime = ran.option("--runtime")
    if runtime is not None:
        assert row["runtime"] == runtime, ran.fail(str(row))
    if runtime == "docker":  # the comment's "inside sweeper-test/python:latest"
        assert row["image"] == config.get_step(row["step"]).image, ran.fail(str(row))
    if "--reuse" in ran.words:  # answered by the earlier run of the same spec
        source = next(
            (r for e in earlier for r in e.added if r["execution_id"] == row["reused_from"]), None
        )
        assert source is not None and parameters(source) == values, ran.fail(str(row))
        assert f"(reused {source['execution_id']})" in ran.output, ran.fail("no (reused ID)")


def check_sweep(ran: Ran, project: Path, config: Config, earlier: list[Ran]) -> None:
    """A sweep: ``--trials N`` executions (or the grid's), one sweep, the ``-p`` in each."""
    words = ran.words
    step = words[2] if words[1] == "sweep" else words[1]
    trials = ran.option("--trials")
    expected = int(trials) if trials is not None else grid_size(ran, config, step)
    assert len(ran.added) == expected, ran.fail(f"{len(ran.added)} executions, not {expected}")
    sweep_id, rows = latest_sweep(project)
    assert {r["sweep_id"] for r in ran.added} == {sweep_id}, ran.fail("not one new sweep")
    assert len(rows) == expected, ran.fail(f"the sweep has {len(rows)} executions")
    assert {r["step"] for r in rows} == {step}, ran.fail("another step ran")
    assert {r["status"] for r in rows} <= {"complete", "error", "pruned"}, ran.fail("unfinished")
    for row in rows:
        values = parameters(row)
        for name, spec in ran.specs().items():
            assert fits(spec, values[name]), ran.fail(f"{name}={values[name]} is not {spec}")
        metric = ran.option("--metric")
        if metric is not None and row["status"] == "complete":
            assert metric in json.loads(row["metrics"]), ran.fail(f"no {metric} in {row}")
    if "--reuse" in words:  # the README repeats an earlier seeded sweep: all of it is reused
        line = ran.command.line.replace(" --reuse", "")
        original = next(e for e in earlier if e.command.line == line)
        sources = {r["execution_id"] for r in original.added}
        assert {r["reused_from"] for r in rows} == sources, ran.fail("not all reused")


def check_pipeline(ran: Ran, project: Path, config: Config, earlier: list[Ran]) -> None:
    """``sweep pipeline run NAME``: one complete execution per node, all of one run."""
    nodes = [node.name for node in config.pipelines[ran.words[3]].nodes]
    assert sorted(r["node"] for r in ran.added) == sorted(nodes), ran.fail("not every node ran")
    assert {r["status"] for r in ran.added} == {"complete"}, ran.fail("a node did not complete")
    run_ids = {r["pipeline_run_id"] for r in ran.added}
    if "--json" in ran.words:
        assert run_ids == {json.loads(ran.output.splitlines()[-1])["pipeline_run_id"]}
    assert len(run_ids) == 1, ran.fail(f"executions of runs {run_ids}")


def check_verify(ran: Ran, project: Path, config: Config, earlier: list[Ran]) -> None:
    """``sweep verify EXEC``: one re-run, of the same step and parameters as the execution."""
    assert len(ran.added) == 1, ran.fail(f"{len(ran.added)} executions, not 1")
    (row,) = ran.added
    original = next(r for e in reversed(earlier) for r in reversed(e.added))
    assert (row["step"], parameters(row)) == (original["step"], parameters(original)), ran.fail(
        str(row)
    )


def check_read(ran: Ran, project: Path, config: Config, earlier: list[Ran]) -> None:
    """A command that reads the store: adds nothing, reports what the store holds."""
    assert not ran.added, ran.fail(f"it added {len(ran.added)} executions")
    for check in READERS.get(ran.words[1], ()):
        check(ran, project, earlier)


def status_counts(ran: Ran, project: Path, earlier: list[Ran]) -> None:
    """``sweep status --json``: the latest sweep's trials as the store counts them."""
    if "--json" not in ran.words:
        return
    printed = json.loads(ran.output.splitlines()[-1])
    sweep_id, rows = latest_sweep(project)
    counts = Counter(r["status"] for r in rows)
    assert printed["sweep_id"] == sweep_id, ran.fail(f"not the latest sweep {sweep_id}")
    trials = printed["trials"]
    assert (trials["complete"], trials["pruned"], trials["running"]) == (
        counts["complete"],
        counts["pruned"],
        0,
    ), ran.fail(str(counts))
    assert sum(trials.values()) == len(rows), ran.fail(str(counts))


def lineage_chain(ran: Ran, project: Path, earlier: list[Ran]) -> None:
    """``sweep lineage``: the chain its comment draws (``a <- file <- b``), line after line.

    The tree names each execution with the output it gave the one above it:
    ``execution #2 ... train-model [complete] (output model.npz)``.
    """
    chain = ran.comment.split(" <- ") if "<-" in ran.comment else []
    lines = ran.output.splitlines()
    if not chain:
        return
    assert chain[0] in lines[0], ran.fail(f"the tree does not start at {chain[0]}")
    at = 0
    for output, node in zip(chain[1::2], chain[2::2], strict=True):
        found = [
            i
            for i, line in enumerate(lines)
            if i > at and node in line and f"(output {output})" in line
        ]
        assert found, ran.fail(f"no {node} giving {output} below line {at + 1}")
        at = found[0]


def replay_covers_the_sweep(ran: Ran, project: Path, earlier: list[Ran]) -> None:
    """``sweep replay latest``: the latest sweep's every trial with a curve, the same each time."""
    pruner = ran.option("--pruner")
    sweep_id, rows = latest_sweep(project)
    replayable = {r["execution_id"] for r in rows if r["status"] in {"complete", "pruned"}}
    if "--json" not in ran.words:
        assert f"sweep {sweep_id} replayed under {pruner}" in ran.output, ran.fail(sweep_id)
        assert re.search(rf"pruned \d+ of {len(replayable)} trials", ran.output), ran.fail("")
        return
    replay = json.loads(ran.output.splitlines()[-1])
    assert (replay["sweep_id"], replay["pruner"]) == (sweep_id, pruner), ran.fail(sweep_id)
    assert {t["execution_id"] for t in replay["trials"]} == replayable, ran.fail("trials")
    # "The same sweep and pruner always give the same answer"
    _, again = run_line(ran.command.line, project, ran.env)
    assert json.loads(again.splitlines()[-1]) == replay, ran.fail("another answer")


def plots_written(ran: Ran, project: Path, earlier: list[Ran]) -> None:
    """``sweep plot``: the PNGs the README names, one more per ``--replay``, each a PNG."""
    words = ran.words
    replays = {f"replay-{words[i + 1]}.png" for i, w in enumerate(words) if w == "--replay"}
    paths = [project / line.strip() for line in ran.output.splitlines() if line.endswith(".png")]
    assert {p.name for p in paths} == PLOTS | replays, ran.fail("other plots")
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", ran.fail(f"{path} is no PNG")


def pipeline_show(ran: Ran, project: Path, earlier: list[Ran]) -> None:
    """``sweep pipeline show latest``: the last pipeline run, each node's execution."""
    if ran.words[2] != "show":
        return
    run = next(e for e in reversed(earlier) if e.words[1:3] == ["pipeline", "run"])
    (run_id,) = {r["pipeline_run_id"] for r in run.added}
    assert ran.output.startswith(f"pipeline run {run_id} ("), ran.fail(run_id)
    for row in run.added:
        assert row["execution_id"] in ran.output, ran.fail(f"no node {row['node']}")


READERS: dict[str, tuple[Callable[[Ran, Path, list[Ran]], None], ...]] = {
    "status": (status_counts,),
    "lineage": (lineage_chain,),
    "replay": (replay_covers_the_sweep,),
    "plot": (plots_written,),
    "pipeline": (pipeline_show,),
}


def check_effects(ran: Ran, project: Path, earlier: list[Ran]) -> None:
    """What a README command did to the store is what the README says it does."""
    config = load_config(project / "valohai.yaml")
    words = ran.words
    if words[1] == "run":
        check_run(ran, project, config, earlier)
    elif words[1:3] == ["pipeline", "run"]:
        check_pipeline(ran, project, config, earlier)
    elif words[1] in config.steps or words[1] == "sweep":
        check_sweep(ran, project, config, earlier)
    elif words[1] == "verify":
        check_verify(ran, project, config, earlier)
    else:
        check_read(ran, project, config, earlier)


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
    assert matches(metrics, "  metrics: epoch=3, loss=1.5e-05, accuracy=1")
    assert not matches(metrics, "  metrics: epoch=10, loss=0.600125, accuracy=0.64")
    assert not matches(metrics, "  metrics: epoch=3, loss=0.6")
    done = "execution #1 01M8BAYZE76BKC8GJYF30F1ASB: complete in 0.33s"
    assert matches(done, "execution #1 01M8N70QFYX1VGBYQMHTWQY058: complete in 12.20s")
    assert not matches(done, "execution #12 01M8N70QFYX1VGBYQMHTWQY058: complete in 1.20s")
    assert not matches(done, "execution #1 01M8N70QFYX1VGBYQMHTWQY058: error in 1.20s")
    reused = "sweep 01M8...: 6 complete (reused 6 from the store), 0 failed, 0 pruned"
    assert matches(
        reused,
        "sweep 01M96KPBZBAQ89V24ENCD9F7M1: 6 complete (reused 6 from the store), 0 failed, 0 pruned",
    )
    assert not matches(
        reused,
        "sweep 01M8N70QFYX1VGBYQMHTWQY058: 6 complete (reused 1 from the store), 0 failed, 0 pruned",
    )
    command = "python ./train_model.py --epochs=3 --learning_rate=0.01 --hidden_units=16"
    assert not matches(command, command.replace("0.01", "0.02"))
    output = "  output: model.npz 2026 B datum://" + "cd" * 32
    assert matches(output, "  output: model.npz 2031 B datum://" + "0e" * 32)
    summary = '{"sweep_id": "01M8...", "trials": {"complete": 20}, "best": {...}}'
    assert matches(summary, '{"sweep_id": "x", "trials": {"complete": 3}, "best": {"a": 1}}')
    assert not matches(summary, '{"sweep_id": "x", "trials": {"complete": 3}, "best": null}')
    assert not matches(summary, '{"sweep_id": "x", "best": {}}')
    node = '{"pipeline_run_id": "01M8...", "status": "complete"}'
    assert matches(node, '{"pipeline_run_id": "01M96KQ73JFS8QNN9CR58KRN6T", "status": "complete"}')
    assert not matches(node, '{"pipeline_run_id": "01M96KQ73JFS8QNN9CR58KRN6T", "status": "error"}')
    assert unmatched([metrics, metrics], metrics) == [metrics]


def test_fits_reads_the_space_syntax() -> None:
    assert fits("log:1e-4..1", 0.3) and not fits("log:1e-4..1", 2.0)
    assert fits("relu,tanh", "tanh") and not fits("relu,tanh", "sigmoid")
    assert fits("-2,-1,0,1", -2) and not fits("-2,-1,0,1", 2)
    assert fits("float:0..1:0.1", 0.5) and fits("10", 10) and not fits("10", 5)


@pytest.mark.ray
@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("block", BLOCKS, ids=_block_id)
def test_console_block_runs_as_written(block: Block, tmp_path: Path, shell_env: dict) -> None:
    cwd = fresh_example(tmp_path)
    ran: list[Ran] = []
    for command in block.commands:
        if command.needs_cluster:
            continue  # test_cluster_commands runs it against a real head
        before = store_rows(cwd)
        cwd, output = run_line(command.line, cwd, shell_env)
        if command.line.startswith("cd "):
            continue
        check_output(command, output)
        after = store_rows(cwd)
        added = [row for key, row in after.items() if key not in before]
        this = Ran(command, output, added, shell_env)
        check_effects(this, cwd, ran)
        ran.append(this)
    assert ran, f"nothing to run in the README block under {block.heading!r}"


CLUSTER_COMMANDS = [c for b in BLOCKS for c in b.commands if c.needs_cluster]
#: Fake GPUs of the head in ``test_cluster_commands_on_fake_gpus``: more than one, so that a
#: trial handed every GPU, or the same id whatever Ray gave it, shows.
FAKE_GPUS = 2


def real_gpus() -> int:
    """How many NVIDIA GPUs this machine has (0 without a driver)."""
    if shutil.which("nvidia-smi") is None:
        return 0
    proc = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return proc.stdout.count("GPU ") if proc.returncode == 0 else 0


def head_gpu_ids(num_gpus: int | None) -> set[str]:
    """The ids of the GPUs a head has: its fake ones, or those of this machine Ray sees."""
    if num_gpus is not None:
        return {str(i) for i in range(num_gpus)}
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:  # Ray gives out these ids, not 0..n-1
        return {gpu for gpu in visible.split(",") if gpu}
    return {str(i) for i in range(real_gpus())}


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


def run_on_cluster(
    command: Command, line: str, head: str, gpu_ids: set[str], root: Path, env: dict
) -> None:
    """Run a cluster command of the README in a fresh example project on ``head``."""
    # `--address auto` finds the cluster through RAY_ADDRESS, as on a node of a real cluster
    cwd = fresh_example(root) / "configs"
    _, output = run_line(line, cwd, {**env, "RAY_ADDRESS": head})
    check_output(command, output)
    rows = list(store_rows(cwd).values())
    ran = Ran(Command(line, command.expected), output, rows)
    check_effects(ran, cwd, [])
    assert {r["status"] for r in rows} == {"complete"}, output
    per_trial = ran.option("--gpus-per-trial")
    if per_trial is not None:
        # every trial held as many GPUs of the head as it asked for (0.5: one, shared)
        for row in rows:
            held = [str(g) for g in json.loads(row["gpu_ids"])]
            assert len(held) == math.ceil(float(per_trial)), row
            assert set(held) <= gpu_ids, (row, gpu_ids)


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
    with ray_head(num_gpus=FAKE_GPUS) as head:
        run_on_cluster(command, line, head, head_gpu_ids(FAKE_GPUS), tmp_path, shell_env)


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
        run_on_cluster(command, command.line, head, head_gpu_ids(None), tmp_path, shell_env)


def test_every_cluster_command_is_run_by_the_cluster_tests() -> None:
    assert CLUSTER_COMMANDS, "the README shows a cluster sweep: the cluster tests run it"
    assert [c.line for c in CLUSTER_COMMANDS] == [
        c.line for b in BLOCKS for c in b.commands if "--address" in c.line
    ]
