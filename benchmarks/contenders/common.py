"""Arguments, the trial command and the report shared by every contender."""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from benchmarks.paths import PROJECT

#: The search space of each step of the benchmark project: name -> (low, high, log).
SPACES: dict[str, dict[str, tuple[float, float, bool]]] = {
    "trivial": {"x": (0.0, 1.0, False)},
    "sleep": {"x": (0.0, 1.0, False)},
    "uneven": {"x": (0.0, 1.0, False)},
    "digits": {"C": (1e-3, 1e3, True), "gamma": (1e-5, 1.0, True)},
}

SCRIPTS = {
    "trivial": "trivial.py",
    "sleep": "sleep.py",
    "digits": "digits.py",
    "uneven": "uneven.py",
}


@dataclass
class Args:
    """What one contender run is asked to do."""

    step: str
    trials: int
    parallel: int
    sampler: str
    seed: int | None
    metric: str
    direction: str
    runtime: str
    workdir: Path
    out: Path
    query: bool = False
    free_order: bool = False
    #: Each trial's CPUs (fractional: many trials in flight on few cores); None: 1.
    cpus_per_trial: float | None = None
    #: sweeper only: join the warm head of `sweep up` kept in this SWEEPER_HOME.
    warm_home: Path | None = None
    #: sweeper only: the study's Optuna storage URL (`--storage`); None: the store's journal.
    storage: str | None = None


def parse_args(description: str) -> Args:
    """Parse the common contender arguments."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--step", default="trivial", choices=sorted(SPACES))
    parser.add_argument("--trials", type=int, required=True)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--sampler", default="tpe", choices=["tpe", "random"])
    parser.add_argument("--seed", type=int)
    parser.add_argument("--metric", default="loss")
    parser.add_argument("--direction", default="minimize", choices=["minimize", "maximize"])
    parser.add_argument("--runtime", default="local", choices=["local", "docker"])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--query",
        action="store_true",
        help="After the run, time `sweep ls --sort -metric.loss --limit 10` and results.best().",
    )
    parser.add_argument(
        "--free-order", action="store_true", help="sweeper: tell results as they come."
    )
    parser.add_argument("--cpus-per-trial", type=float, default=None)
    parser.add_argument("--warm-home", type=Path, default=None)
    parser.add_argument("--storage", default=None, help="sweeper: `sweep --storage URL`.")
    ns = parser.parse_args()
    ns.workdir.mkdir(parents=True, exist_ok=True)
    return Args(**vars(ns))


def command_line(step: str, params: dict[str, Any]) -> str:
    """The shell line sweeper renders for ``step`` (``python3 ./script.py --name=value``)."""
    rendered = " ".join(shlex.quote(f"--{k}={v}") for k, v in params.items())
    return f"python3 ./{SCRIPTS[step]} {rendered}"


def run_local(step: str, params: dict[str, Any]) -> dict[str, Any]:
    """Run the step like sweeper's local runtime does (``/bin/sh -e -c`` in the project folder)."""
    completed = subprocess.run(
        ["/bin/sh", "-e", "-c", command_line(step, params)],
        cwd=PROJECT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        check=True,
    )
    return last_metrics(completed.stdout.decode())


def last_metrics(output: str) -> dict[str, Any]:
    """Merge every JSON-object line the step printed (later keys win)."""
    metrics: dict[str, Any] = {}
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                metrics.update(value)
    return metrics


def best_of(values: list[float], direction: str) -> float | None:
    """The best value in ``direction`` (None when there is none)."""
    if not values:
        return None
    return min(values) if direction == "minimize" else max(values)


class Clock:
    """Named phase timings inside a contender, in seconds since the harness started it.

    The harness passes its start time in ``BENCH_T0``; without it, the process start time.
    """

    def __init__(self) -> None:
        anchor = os.environ.get("BENCH_T0")
        self.start = float(anchor) if anchor else psutil.Process().create_time()
        self.marks: dict[str, float] = {}

    def mark(self, name: str) -> None:
        """Record that phase ``name`` ended now."""
        self.marks[name] = round(time.time() - self.start, 4)

    def between(self, first: str, last: str) -> float:
        """Seconds from the end of phase ``first`` to the end of phase ``last``."""
        return self.marks[last] - self.marks[first]


def write_report(args: Args, values: list[float], clock: Clock, **extra: Any) -> None:
    """Write the contender's JSON report: trial values, the best one, phase timings."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report = {
        # the driver's own CPU (not its children's: the trials' processes, Ray's)
        "driver_cpu_s": usage.ru_utime + usage.ru_stime,
        "trials": len(values),
        "values": values,
        "best": best_of(values, args.direction),
        "phases": clock.marks,
        **extra,
    }
    args.out.write_text(json.dumps(report, default=str))
