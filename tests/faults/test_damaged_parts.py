"""Part files damaged on disk: readers name them and keep every other row; doctor finds them."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from sweeper.store import Store
from sweeper.store._parts import DamagedPartWarning
from tests.conftest import run_main, sweep_cli
from tests.faults.conftest import TINY_PY, TINY_STEP

pytestmark = [pytest.mark.faults]


@pytest.fixture
def store_with_three(make_project, capsys: pytest.CaptureFixture[str]) -> Path:
    project: Path = make_project(TINY_STEP, {"tiny.py": TINY_PY})
    for x in ("0.1", "0.2", "0.3"):
        code, _out, err = run_main(
            [
                "run",
                "tiny",
                "--runtime",
                "local",
                "-p",
                f"x={x}",
                "-p",
                "sleep=0",
                "-f",
                str(project / "valohai.yaml"),
            ],
            capsys,
        )
        assert code == 0, err
    return project


def _parts(project: Path, dataset: str) -> list[Path]:
    return sorted((project / ".sweeper" / "datasets" / dataset).glob("part-*.parquet"))


def test_truncated_parts_are_reported_skipped_and_quarantined(store_with_three: Path) -> None:
    project = store_with_three
    store_dir = project / ".sweeper"
    config = str(project / "valohai.yaml")
    executions = _parts(project, "executions")
    metrics = _parts(project, "metrics")
    assert len(executions) == 3 and len(metrics) == 3
    damaged_execution = executions[1]
    damaged_execution.write_bytes(
        damaged_execution.read_bytes()[: damaged_execution.stat().st_size // 2]
    )
    metrics[0].write_bytes(b"")  # truncated to nothing
    artifacts = _parts(project, "artifacts")
    artifacts[2].write_bytes(b"PAR1" + b"\xff" * 64 + b"PAR1")  # garbage with valid magic

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = Store.open(store_dir).read_dataset("executions")
    assert table.num_rows == 2
    messages = [str(w.message) for w in caught if issubclass(w.category, DamagedPartWarning)]
    assert len(messages) == 1 and str(damaged_execution) in messages[0]

    listed = sweep_cli("ls", "--format", "json", "-f", config)
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 2
    assert str(damaged_execution) in listed.stderr and "Traceback" not in listed.stderr
    shown = sweep_cli("show", "latest", "-f", config)
    assert shown.returncode == 0 and "Traceback" not in shown.stderr

    doctor = sweep_cli("doctor", "-f", config)
    assert doctor.returncode == 1
    reported = sorted(line.split(":")[0] for line in doctor.stdout.splitlines())
    expected = sorted(
        str(p.relative_to(store_dir)) for p in (damaged_execution, metrics[0], artifacts[2])
    )
    assert reported == expected, doctor.stdout

    quarantined = sweep_cli("doctor", "--quarantine", "-f", config)
    assert quarantined.returncode == 0, quarantined.stderr
    for rel in expected:
        assert not (store_dir / rel).exists()
        assert (store_dir / "quarantine" / rel).is_file()
    again = sweep_cli("doctor", "-f", config)
    assert again.returncode == 0 and "store ok" in again.stderr
    clean = sweep_cli("ls", "--format", "json", "-f", config)
    assert clean.returncode == 0 and clean.stderr.strip() == ""
    assert len(json.loads(clean.stdout)) == 2
    # the store keeps working: a new execution is recorded next to the survivors
    more = sweep_cli("run", "tiny", "--runtime", "local", "-p", "sleep=0", "-f", config)
    assert more.returncode == 0, more.stderr
    assert Store.open(store_dir).read_dataset("executions").num_rows == 3
