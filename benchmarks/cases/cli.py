"""Case 7, CLI: wall time of the quick commands on the bundled example, and `vh lint` as the peer.

Each command is a fresh process, as a user runs it: `python -m sweeper.cli.main ARGS` and the
`sweep` console script, from a copy of configs/ whose store holds one `sweep run` and a 3-trial
sweep (made before timing). The peer is the Valohai CLI's `vh lint` on the same valohai.yaml
(`pip install valohai-cli`, in the `bench` extra); the floor is `python -c pass`.

Each command is started by a small wrapper process (a bare ``python -I -S``) that times it and
reads its own CPU time and peak RSS with ``wait4``. Linux carries the peak RSS of the process
that forks into the child's (``exec`` keeps the larger of the two), so a child of the
benchmark process itself, grown to ~170 MB by earlier cases, would report that for every
command; the wrapper is ~10 MB. Python writes bytecode caches as for a user (into the case's
work folder, whatever ``PYTHONDONTWRITEBYTECODE`` says) and every command runs once before
the timed repetitions, so no repetition compiles sweeper from source.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.cases.base import CaseResult, Goal, Row, Settings, fmt
from benchmarks.paths import REPO, benchmark_env

#: The commands the goal names, as ``sweep`` arguments.
COMMANDS = {
    "--help": ["--help"],
    "lint": ["lint"],
    "steps": ["steps"],
    "run --dry-run": ["run", "train-model", "--dry-run"],
    "status": ["status"],
    "ls": ["ls"],
}
#: Each of them answers within this many seconds (issue 13, goal 5).
GOAL_S = 0.3
FLOOR = "python -c pass (floor)"
PEER = "vh lint (valohai-cli)"


#: Runs ``ARGV`` and writes ``[wall s, CPU s, peak RSS KiB, exit status]`` as JSON to a file.
WRAPPER = """
import json, os, sys, time
report, argv = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.posix_spawnp(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
with open(report, "w") as out:
    cpu = usage.ru_utime + usage.ru_stime
    json.dump([wall, cpu, usage.ru_maxrss, os.waitstatus_to_exitcode(status)], out)
"""


def _timed(
    argv: list[str], cwd: Path, env: dict[str, str], log: Path
) -> tuple[float, float, float, int]:
    """Run once: (wall seconds, CPU seconds, peak RSS MB of the process, exit status)."""
    fd, report = tempfile.mkstemp(prefix="cli-run-", suffix=".json", dir=log.parent)
    os.close(fd)
    try:
        with open(log, "ab") as out:
            subprocess.run(
                [sys.executable, "-I", "-S", "-c", WRAPPER, report, *argv],
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                check=True,
            )
        wall, cpu, peak_kib, code = json.loads(Path(report).read_text())
    finally:
        os.unlink(report)
    return wall, cpu, peak_kib / 1024, code


def _imports(argv: list[str], cwd: Path, env: dict[str, str]) -> int | None:
    """How many modules the command imports (``python -X importtime`` lines); None if unknown."""
    if Path(argv[0]).name.startswith("python"):
        argv = [argv[0], "-X", "importtime", *argv[1:]]
    else:  # a console script or another program: Python reads PYTHONPROFILEIMPORTTIME
        env = {**env, "PYTHONPROFILEIMPORTTIME": "1"}
    proc = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    count = sum(1 for line in proc.stderr.splitlines() if line.startswith("import time:"))
    return count - 1 if count else None  # less the header line


def _prepare(project: Path, env: dict[str, str], log: Path) -> None:
    """A copy of configs/ with one execution and a small sweep in its store."""
    shutil.copytree(REPO / "configs", project, ignore=shutil.ignore_patterns(".sweeper"))
    sweep = [sys.executable, "-m", "sweeper.cli.main"]
    setup = [
        ["run", "train-model", "--runtime", "local", "-p", "epochs=2"],
        ["train-model", "--trials", "3", "--runtime", "local", "--seed", "1", "-p", "epochs=2"],
    ]
    for args in setup:
        with open(log, "ab") as out:
            subprocess.run(
                [*sweep, *args], cwd=project, env=env, stdout=out, stderr=out, check=True
            )


def run(settings: Settings) -> CaseResult:
    """Run the CLI case."""
    repetitions = 5
    case = CaseResult(
        "cli",
        "7. CLI: the quick commands on the bundled example",
        "Wall time of one command as a fresh process (Python start and imports included), from a "
        "copy of configs/ whose store holds one `sweep run` and a 3-trial sweep. "
        f"Medians of {repetitions} repetitions in alternating order; cpu s (user + system) "
        "shows the work when other load on the machine stretches the wall time; peak MB is the "
        "process's own peak RSS (read by a ~10 MB wrapper process, so never below that); modules "
        "= how many modules it imports (`python -X importtime`). Bytecode caches are written as "
        "for a user and each command runs once untimed first. vs floor = wall / `python -c pass`; "
        "vs sweeper (peer row) = `vh lint` wall / `sweep lint` wall on the same file.",
    )
    workdir = settings.workdir / "cli"
    workdir.mkdir(parents=True, exist_ok=True)
    project, log = workdir / "project", workdir / "cli.log"
    env = benchmark_env()
    # A user's Python reads sweeper from its .pyc files; without them every command would
    # compile each sweeper module it imports from source, every time.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    _prepare(project, env, log)
    bindir = Path(sys.executable).parent
    launchers = {"python -m sweeper.cli.main": [sys.executable, "-m", "sweeper.cli.main"]}
    if (bindir / "sweep").is_file():
        launchers["sweep"] = [str(bindir / "sweep")]
    else:
        case.notes.append(f"no `sweep` console script next to {sys.executable}: not timed")
    runs: dict[str, list[str]] = {FLOOR: [sys.executable, "-c", "pass"]}
    for launcher, prefix in launchers.items():
        for name, args in COMMANDS.items():
            runs[f"{launcher} {name}"] = [*prefix, *args]
    vh = shutil.which("vh", path=f"{bindir}{os.pathsep}{env.get('PATH', '')}")
    if vh:
        runs[PEER] = [vh, "lint", "valohai.yaml"]
    else:
        case.notes.append("`vh` (pip install valohai-cli) not found: no peer row")
    walls: dict[str, list[float]] = {label: [] for label in runs}
    cpus: dict[str, list[float]] = {label: [] for label in runs}
    peaks: dict[str, list[float]] = {label: [] for label in runs}
    labels = list(runs)
    # untimed: writes the bytecode caches, and counts the modules each command imports
    modules = {label: _imports(runs[label], project, env) for label in labels}
    for rep in range(repetitions):
        for label in labels if rep % 2 == 0 else reversed(labels):
            wall, cpu, peak, code = _timed(runs[label], project, env, log)
            case.runs.append(
                {"label": label, "repetition": rep, "wall_s": wall, "cpu_s": cpu, "exit": code}
            )
            if code != 0:
                case.notes.append(f"{label} exited {code} (repetition {rep}); see {log}")
                continue
            walls[label].append(wall)
            cpus[label].append(cpu)
            peaks[label].append(peak)
    floor = statistics.median(walls[FLOOR]) if walls[FLOOR] else None
    for label in labels:
        if not walls[label]:
            case.rows.append(Row(label, None, None, None, None, extra={"failed": True}))
            continue
        wall = statistics.median(walls[label])
        row = Row(label, wall, None, max(peaks[label]), max(peaks[label]))
        row.vs_floor = wall / floor if floor else None
        row.extra.update(
            cpu_s=statistics.median(cpus[label]),
            min_s=min(walls[label]),
            max_s=max(walls[label]),
            modules=modules[label],
        )
        case.rows.append(row)
    rows = {r.contender: r for r in case.rows}
    main = "sweep" if "sweep" in launchers else "python -m sweeper.cli.main"
    measured = {name: rows[f"{main} {name}"].wall_s for name in COMMANDS}
    slowest = max((w for w in measured.values() if w is not None), default=None)
    case.goals.append(
        Goal(
            f"`sweep --help`, `lint`, `steps`, `run --dry-run`, `status`, `ls` <= {GOAL_S} s wall each",
            ", ".join(
                f"{name} {fmt(w)} s (cpu {fmt(rows[f'{main} {name}'].extra.get('cpu_s'))} s)"
                for name, w in measured.items()
            ),
            slowest is not None
            and all(w is not None for w in measured.values())
            and slowest <= GOAL_S,
        )
    )
    peer, lint = rows.get(PEER), rows.get(f"{main} lint")
    if peer is not None and lint is not None and peer.wall_s and lint.wall_s:
        peer.vs_sweeper = peer.wall_s / lint.wall_s
        case.goals.append(
            Goal(
                "(peer) `sweep lint` no slower than `vh lint` on the same file",
                f"sweep lint {fmt(lint.wall_s)} s, vh lint {fmt(peer.wall_s)} s: "
                f"sweep lint = {fmt(lint.wall_s / peer.wall_s)} x vh lint",
                lint.wall_s <= peer.wall_s,
            )
        )
    return case
