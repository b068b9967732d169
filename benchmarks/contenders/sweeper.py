"""sweeper: ``sweep STEP --trials N --parallel 2 ... --json --store DIR``, run in-process.

The CLI is called exactly as the ``sweep`` console script would call it, and starts Ray
itself, as it does for a user: in the background, while it snapshots the code and opens
the study. A watcher thread notes the moment Ray is up (``ray.is_initialized()``, polled
every 2 ms), so that the Ray start-up (``ray_init_s``: from the CLI's call to Ray being up,
the work done meanwhile included) can be reported apart from the sweep loop (``loop_s``:
from Ray being up to the sweep's end). Set ``BENCH_PROFILE=FILE`` to write a cProfile of
the driver's sweep to FILE, and ``BENCH_OPTUNA_TIMES=FILE`` to write the driver's time per
trial in Optuna's storage and in the sampler to FILE
(:mod:`benchmarks.contenders.optuna_timing`). Reports the sweep's slot idle time
(``sweep.json``), the part files of each dataset and, with ``--query``, the wall time of
``sweep ls --sort -metric.loss --limit 10`` and ``results.best()`` over the store as the
sweep left it.
"""

from __future__ import annotations

import contextlib
import cProfile
import io
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.contenders.common import Clock, parse_args, write_report
from benchmarks.paths import CONFIG


def main() -> None:
    """Run the sweep and write the report."""
    clock = Clock()
    args = parse_args(__doc__ or "")
    from sweeper.cli.main import main as sweep_main
    from sweeper.cluster.connect import shutdown

    clock.mark("imports")
    watcher = RayUpWatcher()
    store = args.workdir / "store"
    argv = [
        args.step,
        "--trials", str(args.trials),
        "--parallel", str(args.parallel),
        "--runtime", args.runtime,
        "--metric", args.metric,
        "--direction", args.direction,
        "--sampler", args.sampler,
        "--json",
        "--store", str(store),
        "-f", str(CONFIG),
    ]  # fmt: skip
    if args.seed is not None:
        argv += ["--seed", str(args.seed)]
    if args.free_order:
        argv.append("--free-order")
    if args.cpus_per_trial is not None:
        argv += ["--cpus-per-trial", str(args.cpus_per_trial)]
    if args.storage is not None:
        argv += ["--storage", args.storage]
    times_path = os.environ.get("BENCH_OPTUNA_TIMES")
    if times_path:  # the driver's time in Optuna's storage and in the sampler, per trial
        from benchmarks.contenders.optuna_timing import install

        install(Path(times_path))
    if args.warm_home is not None:
        # the harness keeps every contender off a running head: this one joins its own
        os.environ["SWEEPER_HOME"] = str(args.warm_home)
        os.environ.pop("SWEEPER_REUSE_RAY", None)
    profile_path = os.environ.get("BENCH_PROFILE")
    profiler = cProfile.Profile() if profile_path else None
    stdout = io.StringIO()
    exit_code = 0
    with contextlib.redirect_stdout(stdout):
        if profiler is not None:
            profiler.enable()
        try:
            sweep_main(argv)
        except SystemExit as exc:
            exit_code = exc.code if isinstance(exc.code, int) else 1
        finally:
            if profiler is not None:
                profiler.disable()
    clock.mark("sweep")
    clock.marks["ray_init"] = watcher.stop(clock)
    if profiler is not None and profile_path:
        profiler.dump_stats(profile_path)
    shutdown()
    clock.mark("ray_shutdown")
    summary = (
        json.loads(stdout.getvalue().strip().splitlines()[-1]) if stdout.getvalue().strip() else {}
    )
    values = trial_values(str(store), args.metric)
    extra = store_facts(store, summary.get("sweep_id"))
    extra.update(width_facts(str(store), args.parallel, clock.start + clock.marks["ray_init"]))
    if args.query and summary.get("sweep_id"):
        extra.update(queries(store, str(summary["sweep_id"]), args.metric, args.direction))
    write_report(
        args,
        values,
        clock,
        exit_code=exit_code,
        summary=summary,
        store=str(store),
        ray_init_s=clock.between("imports", "ray_init"),
        loop_s=clock.between("ray_init", "sweep"),
        **extra,
    )


class RayUpWatcher:
    """A thread that notes when ``ray.is_initialized()`` first turns true."""

    def __init__(self) -> None:
        import ray

        self._ray = ray
        self._done = threading.Event()
        self.up_at: float | None = None
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.is_set():
            if self._ray.is_initialized():
                self.up_at = time.time()
                return
            self._done.wait(0.002)

    def stop(self, clock: Clock) -> float:
        """The moment Ray came up, as a mark of ``clock`` (its "imports" mark if it never did)."""
        self._done.set()
        self._thread.join()
        if self.up_at is None:
            return clock.marks["imports"]
        return round(self.up_at - clock.start, 4)


def store_facts(store: Path, sweep_id: str | None) -> dict[str, Any]:
    """The sweep's slot idle time and the number of part files of each dataset."""
    facts: dict[str, Any] = {}
    if sweep_id:
        saved = json.loads((store / "sweeps" / sweep_id / "sweep.json").read_text())
        facts["slot_idle_s"] = saved.get("slot_idle_s")
    facts["parts"] = {
        folder.name: len(list(folder.glob("part-*.parquet")))
        for folder in sorted((store / "datasets").iterdir())
    }
    return facts


def width_facts(store_path: str, parallel: int, ray_up: float) -> dict[str, Any]:
    """Seconds from Ray being up to the first execution's start, and to the ``parallel``-th's
    (every slot's actor booted and running): the actors' boot, as a user waits for it."""
    import pandas as pd

    from sweeper.store import Store

    table = Store.open(store_path).read_dataset("executions")
    if table.num_rows == 0 or "started_at" not in table.column_names:
        return {}
    starts = sorted(pd.to_datetime(table.column("started_at").to_pandas(), utc=True).dropna())
    if not starts:
        return {}
    seconds = [t.timestamp() - ray_up for t in starts]
    return {
        "first_start_s": seconds[0],
        "full_width_s": seconds[min(parallel, len(seconds)) - 1],
    }


def queries(store: Path, sweep_id: str, metric: str, direction: str) -> dict[str, float]:
    """Wall seconds of `sweep ls --sort -metric.X --limit 10` and `results.best()`, in-process."""
    import sweeper.results
    from sweeper.cli.main import main as sweep_main

    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            sweep_main(
                ["ls", "--sort", f"-metric.{metric}", "--limit", "10", "--store", str(store)]
            )
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise
    ls_s = time.perf_counter() - t
    t = time.perf_counter()
    sweeper.results.open(str(store)).best(sweep_id, metric=metric, direction=direction)
    return {"ls_s": ls_s, "best_s": time.perf_counter() - t}


def trial_values(store_path: str, metric: str) -> list[float]:
    """The metric of every complete execution in the store, in creation order."""
    from sweeper.store import Store

    table = Store.open(store_path).read_dataset("executions")
    column = f"metric.{metric}"
    if table.num_rows == 0 or column not in table.column_names:
        return []
    frame = table.to_pandas().sort_values("created_at")
    frame = frame[frame["status"] == "complete"]
    return [float(v) for v in frame[column].dropna()]


if __name__ == "__main__":
    main()
