"""A CPU co-load for tests of what a user meets on a busy machine.

Races that an idle machine hides (a thread descheduled at the wrong moment, a deadline that
passes while a signal waits to be handled) show up when the cores are kept busy. The load
is a plain busy loop in a few processes, each bounded in time on its own, so that a test
killed half-way never leaves one spinning for long.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager

_BUSY = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


def on_cpus(cpus: Collection[int]) -> Callable[[], None]:
    """A ``preexec_fn`` that keeps a child process (and all its threads) on ``cpus``."""
    wanted = set(cpus)
    return lambda: os.sched_setaffinity(0, wanted)


@contextmanager
def cpu_load(
    processes: int = 2, *, seconds: float = 600, cpus: Collection[int] | None = None
) -> Iterator[None]:
    """Keep ``processes`` busy loops running for the block (and at most ``seconds``), on
    ``cpus`` when given (none when that is empty), anywhere otherwise."""
    if cpus is not None and not cpus:
        yield
        return
    busy = [
        subprocess.Popen(
            [sys.executable, "-c", _BUSY.format(seconds=seconds)],
            preexec_fn=None if cpus is None else on_cpus(cpus),
        )
        for _ in range(processes)
    ]
    try:
        yield
    finally:
        for proc in busy:
            proc.kill()
        for proc in busy:
            proc.wait()
