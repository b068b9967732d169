"""``dataset://NAME/latest`` in a sweep means the version that was newest when the sweep was
planned: every trial reads it, also those a ``resume`` runs after a newer version was made.

Real processes: the versions are made by the real ``sweep run`` command, the sweep runs on an
embedded Ray through ``sweeper.run_sweep`` and ``sweeper.resume_sweep``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import sweeper
from sweeper.store import Store
from tests.conftest import sweep_cli
from tests.execution.dataset_steps import MAKE_PY, STEPS, USE_PY

# sweeper.run_sweep starts an embedded Ray (stopped by no_ray_left)
pytestmark = [pytest.mark.usefixtures("no_ray_left"), pytest.mark.timeout(900)]

#: The reading step, with a parameter to sweep over.
SWEPT_USE = STEPS.replace(
    " use.py\n",
    " use.py\n    parameters:\n      - name: n\n        type: integer\n        default: 1\n",
)


def _make(project: Path, version: str) -> str:
    proc = sweep_cli(
        "run", "make", "-p", f"version={version}", "--runtime", "local", "--json",
        cwd=project, timeout=280, check=True,
    )  # fmt: skip
    made = json.loads(proc.stdout)
    assert [v["uri"] for v in made["dataset_versions"]] == [f"dataset://shapes/{version}"]
    return str(made["id"])


def _read(project: Path, sweep_id: str) -> list[tuple[str, Any]]:
    """(the input URI its record names, what test.csv held) for each complete trial of the
    sweep (the interrupt stops the trial in flight: its record says stopped)."""
    store = Store.open(str(project / ".sweeper"))
    rows = [r for r in store.read_dataset("executions").to_pylist() if r["sweep_id"] == sweep_id]
    seen = []
    for row in rows:
        record = store.get_record(row["execution_id"])
        assert record is not None
        if record.status.value != "complete":
            assert record.status.value == "stopped", record
            continue
        out = project / f"seen-{record.id}"
        sweep_cli("outputs", record.id, "-d", str(out), cwd=project, check=True)
        test_csv = json.loads((out / "seen.json").read_text())["test.csv"]
        seen.append((record.spec["inputs"]["shapes"][0], test_csv))
    return seen


def test_a_sweep_reads_the_version_latest_meant_when_it_was_planned(make_project: Any) -> None:
    assert "name: n" in SWEPT_USE
    project = make_project(SWEPT_USE, {"make.py": MAKE_PY, "use.py": USE_PY})
    v1_maker = _make(project, "v1")
    config = str(project / "valohai.yaml")

    def newer_version_meanwhile(plan: Any) -> None:
        # planned, no trial started yet: a second execution makes v2
        _make(project, "v2")

    def interrupt_after_one(progress: Any) -> None:
        if progress.counts.get("complete", 0) >= 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt, match="^$"):
        sweeper.run_sweep(
            "use", trials=3, parallel=1, sampler="random", seed=1, specs={"n": "1..9"},
            runtime="local", config=config, on_start=newer_version_meanwhile,
            on_progress=interrupt_after_one,
        )  # fmt: skip
    store = Store.open(str(project / ".sweeper"))
    sweep_id = store.latest_sweep(unfinished=True)
    assert sweep_id is not None
    # the sweep keeps the version it was planned with, for `sweep resume`
    assert store.get_sweep(sweep_id)["options"]["inputs"] == {"shapes": ["dataset://shapes/v1"]}
    first = _read(project, sweep_id)
    assert first and set(first) == {("dataset://shapes/v1", "x\n2\nv1")}

    # v2 is the newest now; the resumed sweep still reads v1
    result = sweeper.resume_sweep(sweep_id, config=config)
    assert result.status.value == "complete"
    assert _read(project, sweep_id) == [("dataset://shapes/v1", "x\n2\nv1")] * 3
    inputs = [r for r in store.read_dataset("artifacts").to_pylist() if r["direction"] == "input"]
    assert inputs and {i["producer_execution_id"] for i in inputs} == {v1_maker}
