"""Case 4, scale: many trivial trials in one sweep; flat cost, memory, queries, slot idle time.

A big random sweep, then TPE sweeps of the same size with the study in the store's journal
and in PostgreSQL (``--storage``, the server named by ``SWEEPER_TEST_POSTGRES_URL``; the
row is left out with a note when it is unset). Each PostgreSQL run gets a schema of its own
(``search_path``), dropped afterwards, so reruns never share tables. The TPE sweeps run
with ``BENCH_OPTUNA_TIMES`` (:mod:`benchmarks.contenders.optuna_timing`): the driver's time
per trial inside Optuna's storage calls and the sampler's own time per ask, in the first
and the last 10% of the trials.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from benchmarks.cases.base import (
    RETRIES,
    CaseResult,
    Contender,
    Goal,
    Row,
    Settings,
    alternate,
    fmt,
    memory_goal,
    summarize,
)
from benchmarks.measure import Measurement, run_contender

#: "Flat" means the last 10% cost at most this much more per trial than the first 10%.
FLAT = 1.1
#: The driver's peak memory at the end of the big sweep stays under this.
DRIVER_MB = 500
#: `sweep ls --sort -metric.loss --limit 10` and `results.best()` over the store, without
#: a manual `sweep compact`, each answer within this.
QUERY_S = 0.3
#: Issue 25, goal 4: a TPE sweep's last 10% at most this much slower per trial than its first.
TPE_FLAT = 1.2
#: ... and the driver's time inside Optuna's storage per trial at the end, at most this.
STORAGE_MS = 10.0
#: The PostgreSQL server of the PostgreSQL row (`scripts/test` starts one and sets it).
POSTGRES_ENV = "SWEEPER_TEST_POSTGRES_URL"


def windows(store_path: str, parallel: int) -> dict[str, Any]:
    """Per-trial wall time in the first and the last 10% of the executions (by created_at).

    ``ms_per_trial`` = span of the window (first created_at to last ended_at) / its size:
    the throughput cost including everything between executions. ``run_ms`` = mean
    created_at -> ended_at of one execution (inside the actor). ``between_ms`` = the part
    of a trial's slot time not spent inside an execution, per slot.
    """
    from sweeper.store import Store

    frame = Store.open(store_path).read_dataset("executions").to_pandas().sort_values("created_at")
    k = max(1, len(frame) // 10)
    out: dict[str, Any] = {"executions": len(frame)}
    for name, window in (("first", frame.head(k)), ("last", frame.tail(k))):
        span = (window["ended_at"].max() - window["created_at"].min()).total_seconds()
        run_ms = (window["ended_at"] - window["created_at"]).dt.total_seconds().mean() * 1000
        per_trial = span / len(window) * 1000
        out[f"{name}_ms_per_trial"] = per_trial
        out[f"{name}_run_ms"] = run_ms
        out[f"{name}_between_ms"] = per_trial * parallel - run_ms
    return out


def _args(trials: int, sampler: str) -> list[str]:
    return [
        "--step", "trivial",
        "--trials", str(trials),
        "--parallel", "2",
        "--sampler", sampler,
        "--seed", "1",
        "--query",
    ]  # fmt: skip


def run(settings: Settings) -> CaseResult:
    """Run the scale case: a big random sweep, then TPE sweeps on the journal and PostgreSQL."""
    trials = 300 if settings.quick else 10_000
    tpe_trials = 300 if settings.quick else 10_000
    random_label = f"sweeper random ({trials})"
    journal_label = f"sweeper tpe journal ({tpe_trials})"
    postgres_label = f"sweeper tpe postgresql ({tpe_trials})"
    case = CaseResult(
        "scale",
        f"4. Scale: {trials} trivial trials (random sampler), {tpe_trials} with TPE (journal and "
        "PostgreSQL), parallel 2",
        "ms/trial in the first and last 10% of executions from the store's created_at/ended_at; "
        "run = inside the actor (created -> ended), between = the rest of a slot's time per trial "
        "(driver, Ray, Optuna). ls / best() = `sweep ls --sort -metric.loss --limit 10` and "
        "`results.best()` over the store as the sweep left it (no manual compact), in-process. "
        "slot idle = time freed slots waited for their next trial (sampler, journal, submit). "
        "storage ms = the driver's time per trial inside Optuna's storage calls, TPE ms = the "
        "sampler's own time per ask (less its storage calls), each in the first and last 10% of "
        "the trials (timed in the driver by benchmarks/contenders/optuna_timing.py). "
        "Peak driver memory is the sweeper process alone.",
    )
    rows: list[Row] = []
    runs: dict[str, Any] = {}
    workdir = settings.workdir / "scale"
    results = alternate(
        [Contender(random_label, "sweeper", _args(trials, "random"))], 1, workdir, case
    )
    rows.append(_row(random_label, results[random_label], trials, runs))
    rows.append(_tpe_row(journal_label, tpe_trials, None, workdir, case, runs))
    postgres = os.environ.get(POSTGRES_ENV)
    if postgres:
        with fresh_schema(postgres) as url:
            rows.append(_tpe_row(postgres_label, tpe_trials, url, workdir, case, runs))
    else:
        case.notes.append(
            f"{postgres_label} left out: {POSTGRES_ENV} is not set (`bash scripts/test` starts "
            "a PostgreSQL server and sets it)"
        )
    case.rows = rows
    big = rows[0]
    if random_label not in runs:
        case.goals.append(Goal(f"{trials} trials in one sweep", "sweeper failed", None))
    else:
        ratio = big.extra["last_over_first"]
        case.goals.append(
            Goal(
                f"{trials} trials: per-trial overhead of the last 10% <= {FLAT} x the first 10%",
                f"{fmt(big.extra['first_ms_per_trial'], 1)} -> {fmt(big.extra['last_ms_per_trial'], 1)} "
                f"ms/trial ({ratio:.2f} x)",
                ratio <= FLAT,
            )
        )
        mb = big.peak_driver_mb
        case.goals.append(
            Goal(
                f"{trials} trials: driver peak RSS < {DRIVER_MB} MB",
                f"{fmt(mb, 0)} MB (tree {fmt(big.peak_tree_mb, 0)} MB)",
                None if mb is None else mb < DRIVER_MB,
            )
        )
        ls_s, best_s = big.extra.get("ls_s"), big.extra.get("best_s")
        case.goals.append(
            Goal(
                f"{trials} trials: `sweep ls --sort -metric.loss --limit 10` and `results.best()` "
                f"< {QUERY_S} s without a manual compact",
                f"ls {fmt(ls_s, 3)} s, best() {fmt(best_s, 3)} s; parts {big.extra.get('parts')}",
                None if ls_s is None or best_s is None else max(ls_s, best_s) < QUERY_S,
            )
        )
    for row in rows[1:]:
        case.goals.extend(tpe_goals(row, row.contender in runs, big))
    case.goals.append(memory_goal(case.rows, random_label))
    return case


def _row(label: str, results: list[Measurement], n: int, runs: dict[str, Any]) -> Row:
    """A sweep's row: the harness's medians, the store's first/last 10%, the queries."""
    row = summarize(label, results, n)
    if results:
        report = results[0].report
        runs[label] = report
        row.extra.update(windows(report["store"], 2))
        row.extra["last_over_first"] = (
            row.extra["last_ms_per_trial"] / row.extra["first_ms_per_trial"]
        )
        for key in ("ls_s", "best_s", "slot_idle_s", "parts"):
            row.extra[key] = report.get(key)
        if report.get("slot_idle_s") is not None:
            row.extra["slot_idle_ms_per_trial"] = report["slot_idle_s"] / n * 1000
    return row


def _tpe_row(
    label: str,
    n: int,
    storage: str | None,
    workdir: Path,
    case: CaseResult,
    runs: dict[str, Any],
) -> Row:
    """A TPE sweep of ``n`` trials (``storage`` None: the journal), timed inside Optuna."""
    args = _args(n, "tpe") + (["--storage", storage] if storage else [])
    results: list[Measurement] = []
    for attempt in range(1 + RETRIES):
        folder = workdir / f"{label}-{attempt}".replace(" ", "_").replace("(", "").replace(")", "")
        times = folder / "optuna_times.json"
        measurement = run_contender(
            "sweeper",
            [*args, "--workdir", str(folder)],
            folder,
            timeout=7200,
            label=label.replace(" ", "_"),
            extra_env={"BENCH_OPTUNA_TIMES": str(times)},
        )
        case.runs.append({"repetition": 0, "attempt": attempt, **measurement.to_dict()})
        if measurement.ok:
            results.append(measurement)
            break
        case.notes.append(
            f"{label} failed (attempt {attempt}, exit {measurement.returncode}): "
            + (measurement.stderr_tail.strip().splitlines() or ["no stderr"])[-1]
        )
    row = _row(label, results, n, runs)
    if results and times.exists():
        timed = json.loads(times.read_text())
        for key in ("first_storage_ms", "last_storage_ms", "first_sampler_ms", "last_sampler_ms"):
            row.extra[key] = timed.get(key)
        row.extra["optuna_calls"] = timed.get("methods")
    return row


def tpe_goals(row: Row, ran: bool, random_row: Row) -> list[Goal]:
    """Issue 25, goal 4, for one TPE sweep: flat per trial, storage time at the end, TPE's own."""
    name = row.contender.removeprefix("sweeper ")
    if not ran:
        return [Goal(f"{name}: last 10% <= {TPE_FLAT} x first 10% per trial", "failed", None)]
    extra = row.extra
    ratio = extra["last_over_first"]
    storage = extra.get("last_storage_ms")
    random_ratio = random_row.extra.get("last_over_first")
    return [
        Goal(
            f"{name}: last 10% <= {TPE_FLAT} x first 10% per trial",
            f"{fmt(extra['first_ms_per_trial'], 1)} -> {fmt(extra['last_ms_per_trial'], 1)} "
            f"ms/trial ({ratio:.2f} x; between {fmt(extra['first_between_ms'], 1)} -> "
            f"{fmt(extra['last_between_ms'], 1)} ms; random sampler {fmt(random_ratio)} x)",
            ratio <= TPE_FLAT,
        ),
        Goal(
            f"{name}: driver's time in Optuna's storage <= {STORAGE_MS:g} ms per trial at the end",
            f"{fmt(extra.get('first_storage_ms'), 2)} -> {fmt(storage, 2)} ms/trial "
            f"(first -> last 10%)",
            None if storage is None else storage <= STORAGE_MS,
        ),
        Goal(
            f"{name}: TPE's own time per ask (reported)",
            f"{fmt(extra.get('first_sampler_ms'), 2)} -> {fmt(extra.get('last_sampler_ms'), 2)} "
            f"ms/ask (first -> last 10%); slot idle {fmt(extra.get('slot_idle_ms_per_trial'), 2)} "
            "ms/trial",
            None,
        ),
    ]


@contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    """A PostgreSQL schema of its own for one run: yields the URL whose ``search_path`` is it.

    Created on entry, dropped with its tables on exit, so that reruns never share (or
    grow) Optuna's tables.
    """
    import sqlalchemy

    schema = f"sweeper_bench_{int(time.time())}_{os.getpid()}"
    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        yield with_search_path(url, schema)
    finally:
        with engine.connect() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        engine.dispose()


def with_search_path(url: str, schema: str) -> str:
    """``url`` with libpq's ``options=-csearch_path=SCHEMA`` (tables go to, and come from, it)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    query.append(("options", f"-csearch_path={schema}"))
    return urlunsplit(parts._replace(query=urlencode(query)))
