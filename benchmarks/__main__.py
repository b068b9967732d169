"""``python -m benchmarks [--quick] [--cases overhead,containers,...]``: run and report.

Runs each selected case (every contender of a case in the same invocation, in alternating
order), prints a Markdown report and saves it as ``benchmarks/results/latest.md`` with the
raw numbers in ``benchmarks/results/latest.json``. Benchmarks never assert timings.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import report
from benchmarks.cases import CASES
from benchmarks.cases.base import CaseResult, Settings
from benchmarks.paths import RESULTS


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[1]
    )
    parser.add_argument(
        "--quick", action="store_true", help="Small sizes: under 5 minutes on 2 cores."
    )
    parser.add_argument(
        "--cases", default=",".join(CASES), help=f"Comma-separated, from: {', '.join(CASES)}."
    )
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="Where latest.md/latest.json go."
    )
    parser.add_argument(
        "--keep", action="store_true", help="Keep the contenders' work folders (printed)."
    )
    args = parser.parse_args(argv)
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the selected cases and write the report."""
    args = parse(argv)
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    workdir = Path(tempfile.mkdtemp(prefix="sweeper-bench-"))
    settings = Settings(quick=args.quick, workdir=workdir)
    info = {"started": report.now(), "machine": report.machine(), "workdir": str(workdir)}
    start = time.perf_counter()
    cases: list[CaseResult] = []
    try:
        for name in args.cases:
            print(f"benchmarks: {name}...", file=sys.stderr, flush=True)
            t = time.perf_counter()
            case = CASES[name](settings)
            case.elapsed_s = time.perf_counter() - t
            cases.append(case)
            print(f"benchmarks: {name} done in {case.elapsed_s:.0f} s", file=sys.stderr, flush=True)
    finally:
        info["elapsed_s"] = time.perf_counter() - start
        if cases:
            text, md_path, json_path = report.write(cases, info, args.quick, args.results)
            print(text)
            print(f"benchmarks: wrote {md_path} and {json_path}", file=sys.stderr)
        if args.keep:
            print(f"benchmarks: work folders kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
