"""What executions used, from the record to `sweep ls`/`show`, the results API and a sweep's sums.

Real processes on a real Ray (fake GPUs: Ray hands out GPU ids it has no device for, which is
all GPU-seconds need), a real store; the step burns a known CPU time and touches a known
amount of memory.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import sweeper.results
from tests.conftest import sweep_cli
from tests.sweep.test_sweep import executions, make_runner

pytestmark = pytest.mark.timeout(600)

BURN_STEP = """
- step:
    name: burn
    image: sweeper-test/python:latest
    command: python3 ./burn.py {parameters}
    parameters:
      - name: cpu
        type: float
        default: 0.5
      - name: mb
        type: integer
        default: 50
"""

BURN_PY = """
import argparse, json, time
p = argparse.ArgumentParser()
p.add_argument("--cpu", type=float); p.add_argument("--mb", type=int)
a = p.parse_args()
data = bytearray(a.mb * 2**20)
for i in range(0, len(data), 4096):
    data[i] = 1
start = time.process_time()
while time.process_time() - start < a.cpu:
    pass
print(json.dumps({"score": a.cpu}))
"""


@pytest.fixture
def burn_project(make_project) -> Path:
    return make_project(BURN_STEP, {"burn.py": BURN_PY})


def test_an_execution_s_usage_in_its_record_ls_show_and_the_api(burn_project: Path) -> None:
    ran = sweep_cli(
        "run", "burn", "--runtime", "local", "-p", "cpu=1.2", "-p", "mb=800",
        cwd=burn_project, check=True,
    )  # fmt: skip
    assert "resources: cpu" in ran.stderr  # the paragraph after the run
    (listed,) = json.loads(sweep_cli("ls", "--format", "json", cwd=burn_project, check=True).stdout)
    shown = sweep_cli("show", listed["execution_id"], "--json", cwd=burn_project, check=True)
    usage = json.loads(shown.stdout)["usage"]
    # 800 MB: above the peak of the `sweep run` process that starts the step, which a new
    # program inherits (a peak not above it is unknown, None; tests/runtime/test_resources.py
    # checks the figure itself against the starter's own peak)
    assert usage["cpu_s"] >= 1.2
    assert usage["peak_memory_mb"] is None or usage["peak_memory_mb"] >= 760
    assert usage["gpu_s"] == 0  # it asked for no GPU

    (row,) = json.loads(sweep_cli("ls", "--format", "json", cwd=burn_project, check=True).stdout)
    assert (row["cpu_s"], row["peak_memory_mb"], row["gpu_s"]) == (
        usage["cpu_s"], usage["peak_memory_mb"], usage["gpu_s"],
    )  # fmt: skip
    table = sweep_cli("ls", cwd=burn_project, check=True).stdout
    assert "cpu_s" in table and "peak_memory_mb" in table

    shown = sweep_cli("show", listed["execution_id"], cwd=burn_project, check=True).stdout
    assert "cpu_s" in shown and f"{usage['cpu_s']:g}" in shown

    frame = sweeper.results.open(burn_project / ".sweeper").executions()
    assert frame.loc[0, "cpu_s"] == usage["cpu_s"]
    peak = frame.loc[0, "peak_memory_mb"]  # an unknown peak is a null, which pandas reads as NaN
    assert peak == usage["peak_memory_mb"] if usage["peak_memory_mb"] is not None else pd.isna(peak)


def test_a_sweep_sums_what_its_executions_used(burn_project: Path, local_ray: None) -> None:
    sweep = make_runner(
        burn_project,
        step="burn",
        trials=3,
        parallel=2,
        metrics=["score"],
        runtime="local",
        gpus_per_trial=0.5,
        specs={"cpu": ["0.6"], "mb": ["20,40,800"]},
        sampler="grid",  # each of the three sizes once (sampled, all three missed 800 MB 30% of the time)
    )
    summary = sweep.run()
    assert summary["trials"]["complete"] == 3
    rows = executions(burn_project, summary["sweep_id"])
    for row in rows:
        assert row["cpu_s"] >= 0.6
        # half a GPU held for the run, which burnt 0.6 s of CPU (so lasted as long at least)
        assert 0.5 * 0.6 <= row["gpu_s"] <= 0.5 * row["duration_s"] + 0.001  # (rounded)
    resources = summary["resources"]
    assert resources["measured"] == 3
    assert resources["cpu_s"] == pytest.approx(sum(r["cpu_s"] for r in rows), abs=0.002)
    assert resources["gpu_s"] == pytest.approx(sum(r["gpu_s"] for r in rows), abs=0.002)
    # a trial's peak may be unknown (below the peak of the actor that started it), not 800 MB's
    assert resources["peak_memory_mb_max"] == max(r["peak_memory_mb"] or 0 for r in rows)
    assert resources["peak_memory_mb_max"] >= 760

    status = sweep_cli("status", summary["sweep_id"], "--json", cwd=burn_project, check=True)
    assert json.loads(status.stdout)["resources"] == resources
    told = sweep_cli("status", summary["sweep_id"], cwd=burn_project, check=True).stdout
    assert f"resources: cpu {resources['cpu_s']:.2f} s, gpu {resources['gpu_s']:.2f} s" in told
