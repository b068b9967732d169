"""Case 8, serve: an endpoint through sweeper's route on Ray Serve against the same app served
directly; time from `sweep deploy` to the first good answer; requests lost while an alias moves.

Everything runs against one head started with `sweep up` (its own SWEEPER_HOME and ports) on
a copy of benchmarks/project, whose `predict` endpoint is a small WSGI app (`predict_app.py`)
that applies the linear model in its file (`model/model.json`) to a JSON body.

- **Throughput and latency**: `POST {"x": [1, 2, 3]}` to the version path
  (`/bench/v1/predict/`), the alias path (`/bench/live/predict/`) and the peer, the same app
  served directly by uvicorn (`benchmarks/contenders/wsgi_direct.py`), in alternating order.
  Latency: one client, sequential requests on one keep-alive connection (p50/p99: what a
  request costs with nothing queued). Throughput: a few client threads, each with its own
  keep-alive connection, for a fixed time. The clients are `http.client` threads in this
  process (no `ab`/`wrk` is installed); they use CPU of the same 2 cores, the same for every
  peer.
- **Deploy**: from starting `sweep deploy predict ...` (a fresh process, as a user runs it)
  until a GET on the new version's URL answers 200, polled every 20 ms from the start.
- **Alias moves**: two client threads post to the alias path without pause while
  `sweep deployment alias bench live v2` / `v1` runs 10 times; a failed request is any
  answer but 200 or a connection error. v2's model differs, so the answers show the moves.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.cases.base import CaseResult, Goal, Row, Settings, fmt
from benchmarks.paths import PROJECT, REPO, benchmark_env

BODY = json.dumps({"x": [1.0, 2.0, 3.0]}).encode()
DIRECT = "uvicorn + WSGI, 1 process (direct)"
VERSION = "sweeper, version path"
ALIAS = "sweeper, alias path"
#: Goals of issue 23 on 2 CPUs.
GOAL_ADDED_P50_MS = 2.0
GOAL_RPS_RATIO = 0.7
GOAL_DEPLOY_S = 5.0
MOVES = 10
#: The app in the replica's own process, as the direct peer runs it in its own: in the
#: Docker runtime a wsgi endpoint runs in its image behind one more HTTP hop (the WSGI shim).
LOCAL = ("--runtime", "local")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Target:
    """Where one peer answers: ``http://host:port`` + ``path``."""

    label: str
    port: int
    path: str


@dataclass
class Tally:
    """What a client loop saw."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    answers: dict[str, int] = field(default_factory=dict)


def _client(target: Target, stop: threading.Event, tally: Tally, limit: int | None) -> None:
    """Post to ``target`` on one keep-alive connection until ``stop`` (or ``limit`` requests)."""
    connection = http.client.HTTPConnection("127.0.0.1", target.port, timeout=30)
    headers = {"Content-Type": "application/json"}
    done = 0
    while not stop.is_set() and (limit is None or done < limit):
        start = time.perf_counter()
        try:
            connection.request("POST", target.path, body=BODY, headers=headers)
            response = connection.getresponse()
            data = response.read()
            ok = response.status == 200
        except (OSError, http.client.HTTPException):
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", target.port, timeout=30)
            ok, data = False, b""
        tally.latencies.append(time.perf_counter() - start)
        done += 1
        if not ok:
            tally.errors += 1
        else:
            key = data.decode(errors="replace")
            tally.answers[key] = tally.answers.get(key, 0) + 1
    connection.close()


def _load(target: Target, threads: int, seconds: float) -> tuple[float, Tally]:
    """(requests per second, tally) of ``threads`` clients posting for ``seconds``."""
    stop = threading.Event()
    tallies = [Tally() for _ in range(threads)]
    workers = [
        threading.Thread(target=_client, args=(target, stop, tally, None)) for tally in tallies
    ]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    time.sleep(seconds)
    stop.set()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - start
    merged = Tally(errors=sum(t.errors for t in tallies))
    for tally in tallies:
        merged.latencies.extend(tally.latencies)
    return len(merged.latencies) / elapsed, merged


def _sequential(target: Target, count: int) -> Tally:
    tally = Tally()
    _client(target, threading.Event(), tally, count)
    return tally


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


@dataclass
class Head:
    """The case's `sweep up` head and project copy."""

    project: Path
    env: dict[str, str]
    http_port: int
    log: Path

    def sweep(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `sweep ARGS` as a fresh process in the project."""
        proc = subprocess.run(
            [sys.executable, "-m", "sweeper.cli.main", *args],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        with open(self.log, "a") as out:
            out.write(f"$ sweep {' '.join(args)}\n{proc.stdout}{proc.stderr}\n")
        if check and proc.returncode != 0:
            raise RuntimeError(f"sweep {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
        return proc

    def deploy_timed(self, deployment: str) -> float:
        """Seconds from starting `sweep deploy` to the first 200 on the version's URL."""
        url = f"http://127.0.0.1:{self.http_port}/{deployment}/v1/predict/"
        args = ["deploy", "predict", "--deployment", deployment, *LOCAL, "--file"]
        start = time.perf_counter()
        with open(self.log, "a") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "sweeper.cli.main", *args, "predict.model=model.json"],
                cwd=self.project,
                env=self.env,
                stdout=out,
                stderr=out,
            )
        answered = None
        while answered is None and time.perf_counter() - start < 300:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200 and b"linear-3" in response.read():
                        answered = time.perf_counter() - start
            except (OSError, urllib.error.HTTPError):
                pass
            if answered is None:
                time.sleep(0.02)
        if process.wait(timeout=300) != 0 or answered is None:
            raise RuntimeError(f"sweep deploy --deployment {deployment} failed; see {self.log}")
        return answered


def _start(settings: Settings, work: Path) -> Head:
    project = work / "project"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns(".sweeper", "__pycache__"))
    model = json.loads((PROJECT / "model.json").read_text())
    (project / "model2.json").write_text(json.dumps({**model, "b": model["b"] + 1}))
    env = {k: v for k, v in benchmark_env().items() if not k.startswith("RAY_AUTH")}
    env.pop("RAY_ADDRESS", None)
    http_port = _free_port()
    env.update(SWEEPER_HOME=str(work / "home"), SWEEPER_SERVE_PORT=str(http_port))
    head = Head(project, env, http_port, work / "serve.log")
    head.sweep("up", "--port", str(_free_port()), "--num-cpus", "4")
    return head


def _direct(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    """The peer: the app with its model file in a folder of its own, served by uvicorn."""
    folder = work / "direct"
    folder.mkdir()
    shutil.copy(PROJECT / "predict_app.py", folder)
    (folder / "model").mkdir()
    shutil.copy(PROJECT / "model.json", folder / "model" / "model.json")
    port = _free_port()
    module = "benchmarks.contenders.wsgi_direct"
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--folder", str(folder), "--port", str(port)],
        cwd=REPO,
        env=benchmark_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return process, port
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("the direct uvicorn server did not listen within 60 s")


def _measure(
    targets: list[Target], repetitions: int, sequential: int, threads: int, seconds: float
) -> dict[str, dict[str, list[float]]]:
    """Per target: rps, p50/p99 alone, p50/p99 under load, errors; alternating order."""
    out: dict[str, dict[str, list[float]]] = {t.label: {} for t in targets}
    for rep in range(repetitions):
        for target in targets if rep % 2 == 0 else list(reversed(targets)):
            _load(target, threads, 1.0)  # warm-up: connections, threads, caches
            alone = _sequential(target, sequential)
            rps, loaded = _load(target, threads, seconds)
            values = {
                "rps": rps,
                "p50_ms": _pct(alone.latencies, 0.5),
                "p99_ms": _pct(alone.latencies, 0.99),
                "loaded_p50_ms": _pct(loaded.latencies, 0.5),
                "loaded_p99_ms": _pct(loaded.latencies, 0.99),
                "errors": float(alone.errors + loaded.errors),
            }
            for key, value in values.items():
                out[target.label].setdefault(key, []).append(value)
    return out


def _alias_moves(head: Head) -> tuple[int, int, dict[str, int], float]:
    """(failed, total, answers by body, seconds) under a steady loop over MOVES alias moves."""
    target = Target(ALIAS, head.http_port, "/bench/live/predict/")
    stop = threading.Event()
    tallies = [Tally() for _ in range(2)]
    workers = [
        threading.Thread(target=_client, args=(target, stop, tally, None)) for tally in tallies
    ]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    try:
        for move in range(MOVES):
            head.sweep("deployment", "alias", "bench", "live", "v2" if move % 2 == 0 else "v1")
        time.sleep(1.0)  # requests after the last move
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    answers: dict[str, int] = {}
    for tally in tallies:
        for key, count in tally.answers.items():
            answers[key] = answers.get(key, 0) + count
    total = sum(len(t.latencies) for t in tallies)
    return sum(t.errors for t in tallies), total, answers, time.perf_counter() - start


def run(settings: Settings) -> CaseResult:
    """Run the serve case."""
    repetitions, sequential, threads, seconds = (
        (2, 200, 4, 4.0) if settings.quick else (3, 500, 4, 10.0)
    )
    deploys = 2 if settings.quick else 3
    case = CaseResult(
        "serve",
        "8. serve: an endpoint through sweeper's route on Ray Serve vs served directly",
        __doc__.split("\n\n", 1)[1].strip()
        + f"\n\nSizes: {repetitions} repetitions x ({sequential} sequential requests, then "
        f"{threads} clients for {seconds:g} s); {deploys} deploys; {MOVES} alias moves.",
    )
    work = settings.workdir / "serve"
    work.mkdir(parents=True, exist_ok=True)
    head = _start(settings, work)
    direct = None
    try:
        first = [head.deploy_timed(f"first{i}") for i in range(deploys)]
        head.sweep(
            "deploy",
            "predict",
            "--deployment",
            "bench",
            "--file",
            "predict.model=model.json",
            "--alias",
            "live",
            *LOCAL,
        )
        head.sweep(
            "deploy", "predict", "--deployment", "bench", "--file", "predict.model=model2.json",
            *LOCAL,
        )  # fmt: skip
        direct, direct_port = _direct(work)
        targets = [
            Target(VERSION, head.http_port, "/bench/v1/predict/"),
            Target(ALIAS, head.http_port, "/bench/live/predict/"),
            Target(DIRECT, direct_port, "/"),
        ]
        measured = _measure(targets, repetitions, sequential, threads, seconds)
        failed, total, answers, moves_s = _alias_moves(head)
    finally:
        if direct is not None:
            direct.kill()
            direct.wait()
        head.sweep("down", check=False)
    _rows(case, measured, first, failed, total, answers, moves_s)
    return case


def _rows(
    case: CaseResult,
    measured: dict[str, dict[str, list[float]]],
    first: list[float],
    failed: int,
    total: int,
    answers: dict[str, int],
    moves_s: float,
) -> None:
    med = {label: {k: statistics.median(v) for k, v in d.items()} for label, d in measured.items()}
    base = med[DIRECT]
    for label, values in med.items():
        row = Row(label, None, None, None, None)
        row.extra = {
            **values,
            "rps_vs_direct": values["rps"] / base["rps"],
            "p50_added_ms": values["p50_ms"] - base["p50_ms"],
            "repetitions": len(measured[label]["rps"]),
        }
        case.rows.append(row)
    deploy_s = statistics.median(first)
    case.rows.append(
        Row("sweep deploy -> first 200", deploy_s, None, None, None, extra={"deploys_s": first})
    )
    case.rows.append(
        Row(
            f"{MOVES} alias moves under load",
            moves_s,
            None,
            None,
            None,
            extra={"requests": total, "failed": failed, "answers": len(answers)},
        )
    )
    for label in (VERSION, ALIAS):
        added = med[label]["p50_ms"] - base["p50_ms"]
        case.goals.append(
            Goal(
                f"{label}: <= {GOAL_ADDED_P50_MS:g} ms added at p50 (one client)",
                f"{fmt(med[label]['p50_ms'])} ms vs {fmt(base['p50_ms'])} ms direct: "
                f"+{fmt(added)} ms (p99 {fmt(med[label]['p99_ms'])} vs {fmt(base['p99_ms'])})",
                added <= GOAL_ADDED_P50_MS,
            )
        )
        ratio = med[label]["rps"] / base["rps"]
        case.goals.append(
            Goal(
                f"{label}: >= {GOAL_RPS_RATIO:g} x the direct throughput",
                f"{med[label]['rps']:.0f} vs {base['rps']:.0f} req/s: {fmt(ratio)} x",
                ratio >= GOAL_RPS_RATIO,
            )
        )
    case.goals.append(
        Goal(
            f"`sweep deploy` to the first good answer <= {GOAL_DEPLOY_S:g} s (running Ray)",
            f"{fmt(deploy_s)} s (median of {', '.join(fmt(s) for s in first)})",
            deploy_s <= GOAL_DEPLOY_S,
        )
    )
    case.goals.append(
        Goal(
            f"0 failed requests during {MOVES} alias moves under a steady loop",
            f"{failed} of {total} failed; {len(answers)} distinct answers (both versions served)",
            failed == 0 and len(answers) == 2,
        )
    )
    case.notes.append(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
