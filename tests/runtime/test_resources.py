"""What a step used (CPU time, peak memory), measured by both runtimes on real processes.

The steps burn a known CPU time (``time.process_time``, so the load of the machine does not
change it) and touch a known amount of memory; the figures must measure that, in the local
runtime (the kernel's accounting of reaped processes) and in Docker (the container's cgroup).
"""

from __future__ import annotations

import resource
from pathlib import Path

import pytest
from runtime_support import Harness, make_harness

pytestmark = pytest.mark.timeout(300)

#: Busy for SECONDS of CPU time (argv[1]), in this process.
BURN = """
import sys, time
start = time.process_time()
while time.process_time() - start < float(sys.argv[1]):
    pass
"""

#: Touch MB MiB.
HEAVY = """
data = bytearray(MB * 2**20)
for i in range(0, len(data), 4096):
    data[i] = 1
"""


@pytest.fixture
def local_harness(workdir: Path, execution_id: str) -> Harness:
    return make_harness("local", workdir, execution_id, stop_grace_s=1.0)


def _write(harness: Harness, name: str, text: str) -> None:
    (harness.workdir / "repository" / name).write_text(text)


def _wall_s(result) -> float:
    return (result.ended_at - result.started_at).total_seconds()


def test_cpu_time_and_peak_memory_of_a_step(harness: Harness) -> None:
    _write(harness, "burn.py", BURN)
    # well above this process's own peak: a new program inherits its starter's peak, so a
    # smaller one reads as unknown (a long test session's process is large)
    mb = 200 + resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    _write(harness, "heavy.py", HEAVY.replace("MB", str(mb)))
    result, output = harness.run(f"{harness.python} heavy.py && {harness.python} burn.py 1.5")
    assert result.status == "complete", output.lines
    assert result.cpu_s is not None and result.peak_memory_mb is not None
    # every CPU-second the step burnt is there, and none it did not (it runs one thing at a time)
    assert 1.5 <= result.cpu_s <= _wall_s(result) + 0.5
    assert result.peak_memory_mb >= mb - 20


def test_a_child_process_cpu_time_is_counted(harness: Harness) -> None:
    _write(harness, "burn.py", BURN)
    # The step's own process idles while a child it forked burns 1.2 s.
    forks = (
        "import os, runpy, sys\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    sys.argv = ['burn.py', '1.2']\n"
        "    runpy.run_path('burn.py')\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
    )
    _write(harness, "forks.py", forks)
    result, output = harness.run(f"{harness.python} forks.py")
    assert result.status == "complete", output.lines
    assert result.cpu_s is not None and result.cpu_s >= 1.2


def test_a_process_that_left_the_session_is_counted_locally(local_harness: Harness) -> None:
    harness = local_harness
    _write(harness, "burn.py", BURN + "open('done', 'w').close()\n")
    # orphaned at once (its parent subshell exits): this process adopts and reaps it
    result, output = harness.run(
        f"(setsid {harness.python} burn.py 1.2 &)",
        "while [ ! -e done ]; do sleep 0.05; done; sleep 0.2",
    )
    assert result.status == "complete", output.lines
    assert result.cpu_s is not None and result.cpu_s >= 1.2


def test_the_runners_own_memory_is_not_the_steps(local_harness: Harness) -> None:
    harness = local_harness
    # The kernel hands a new program the peak of the process it was started from: this
    # process's 300 MiB must not pass for the step's peak.
    ballast = bytearray(300 * 2**20)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    result, output = harness.run("true")
    del ballast
    assert result.status == "complete", output.lines
    assert result.peak_memory_mb is None or result.peak_memory_mb < 100
