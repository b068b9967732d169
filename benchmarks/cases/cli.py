"""Case 7, CLI: wall time of the quick commands on the bundled example, and `vh lint` as the peer.

Each command is a fresh process, as a user runs it: `python -m sweeper.cli.main ARGS` and the
`sweep` console script, from a copy of configs/ whose store holds one `sweep run` and a 3-trial
sweep (made before timing). The peer is the Valohai CLI's `vh lint` on the same valohai.yaml
(`pip install valohai-cli`, in the `bench` extra); the floor is `python -c pass`.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
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


def _timed(
    argv: list[str], cwd: Path, env: dict[str, str], log: Path
) -> tuple[float, float, float, int]:
    """Run once: (wall seconds, CPU seconds, peak RSS MB of the process, exit status)."""
    with open(log, "ab") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL
        )
        # wait4 gives this child's own CPU time and peak RSS (KiB on Linux), which polling
        # would miss in a process this short
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, usage.ru_maxrss / 1024, proc.returncode


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
        "process's own peak RSS. vs floor = wall / `python -c pass`; vs sweeper (peer row) = `vh lint` "
        "wall / `sweep lint` wall on the same file.",
    )
    workdir = settings.workdir / "cli"
    workdir.mkdir(parents=True, exist_ok=True)
    project, log = workdir / "project", workdir / "cli.log"
    env = benchmark_env()
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
            cpu_s=statistics.median(cpus[label]), min_s=min(walls[label]), max_s=max(walls[label])
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
