"""Timing and memory of one contender run as a subprocess.

Each contender runs as ``python -m benchmarks.contenders.<name> ...``; a background thread
samples the resident memory (RSS) of that process and of all its descendants (Ray's GCS,
raylet and worker processes included) and keeps the peak of the sum. Docker containers are
children of the Docker daemon, not of the contender, so their memory is not counted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from benchmarks.paths import REPO, benchmark_env

MB = 1024 * 1024


class TreeSampler:
    """Samples the RSS of a process tree every ``interval`` seconds in a daemon thread."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_tree = 0
        self.peak_root = 0
        self.samples = 0
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        """Take one sample now (the root and every live descendant)."""
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        total = 0
        for proc in procs:
            try:
                rss = proc.memory_info().rss
            except psutil.Error:
                continue
            total += rss
            if proc.pid != self.pid and proc.pid not in self.seen:
                try:
                    self.seen[proc.pid] = proc.create_time()
                except psutil.Error:
                    pass
            if proc.pid == self.pid:
                self.peak_root = max(self.peak_root, rss)
        self.peak_tree = max(self.peak_tree, total)
        self.samples += 1

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)


@dataclass
class Measurement:
    """One contender run: wall time, memory peaks and what the contender reported."""

    contender: str
    wall_s: float
    peak_tree_mb: float
    peak_driver_mb: float
    returncode: int
    report: dict[str, Any] = field(default_factory=dict)
    stderr_tail: str = ""

    @property
    def ok(self) -> bool:
        """Whether the contender exited 0 and wrote its report."""
        return self.returncode == 0 and bool(self.report)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def run_contender(
    name: str,
    args: list[str],
    workdir: Path,
    *,
    timeout: float = 1800,
    label: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> Measurement:
    """Run ``benchmarks.contenders.<name>`` with ``args`` and measure it.

    The contender writes its report (a JSON object) to ``--out``; its stdout and stderr go
    to files in ``workdir`` (kept for debugging).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    label = label or name
    out = workdir / f"{label}.report.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", f"benchmarks.contenders.{name}", *args, "--out", str(out)]
    stdout_path = workdir / f"{label}.stdout"
    stderr_path = workdir / f"{label}.stderr"
    with open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
        env = benchmark_env()
        env.update(extra_env or {})
        start = time.perf_counter()
        env["BENCH_T0"] = repr(time.time())
        process = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL
        )
        with TreeSampler(process.pid) as sampler:
            try:
                returncode = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_tree(process.pid)
                returncode = process.wait()
        wall = time.perf_counter() - start
    reap_leftovers(sampler.seen)
    report: dict[str, Any] = {}
    if out.is_file():
        try:
            report = json.loads(out.read_text())
        except ValueError:
            report = {}
    tail = stderr_path.read_text(errors="replace")[-2000:] if returncode != 0 or not report else ""
    return Measurement(
        contender=label,
        wall_s=wall,
        peak_tree_mb=sampler.peak_tree / MB,
        peak_driver_mb=sampler.peak_root / MB,
        returncode=returncode,
        report=report,
        stderr_tail=tail,
    )


def _kill_tree(pid: int) -> None:
    """Kill a contender that ran past its timeout, and everything it started."""
    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.Error:
        return
    for proc in procs:
        try:
            proc.kill()
        except psutil.Error:
            pass


def reap_leftovers(seen: dict[int, float], grace: float = 3.0) -> int:
    """Kill processes the contender started that outlived it (e.g. an orphaned raylet).

    Only pids seen in the contender's tree with the same creation time are touched, so a
    recycled pid is never killed. Returns how many were killed.
    """
    deadline = time.monotonic() + grace
    alive: list[psutil.Process] = []
    while True:
        alive = []
        for pid, created in seen.items():
            try:
                proc = psutil.Process(pid)
                if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except psutil.Error:
                continue
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    return len(alive)
