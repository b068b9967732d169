"""`sweep ls`, `compare`, `lineage`, `plot`, `compact`, `doctor` on a real sweep and pipeline."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests.conftest import sweep_cli


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The bundled example after a 6-trial sweep and one pipeline run (one Ray each)."""
    import shutil

    from tests.conftest import EXAMPLE

    project = tmp_path_factory.mktemp("results") / "project"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".sweeper"))
    summary = json.loads(
        sweep_cli(
            "train-model",
            "--trials",
            "6",
            "--runtime",
            "local",
            "--seed",
            "1",
            "-p",
            "epochs=4",
            "--json",
            cwd=project,
            check=True,
        ).stdout
    )
    sweep_cli("pipeline", "run", "train-pipeline", "--runtime", "local", cwd=project, check=True)
    return project, summary


def test_ls_json_rows_are_keyed_by_dataset_columns(swept: tuple[Path, dict]) -> None:
    project, summary = swept
    rows = json.loads(
        sweep_cli(
            "ls", "--sweep", "--sort", "metric.loss", "--format", "json", cwd=project, check=True
        ).stdout
    )
    assert len(rows) == 6
    assert {r["sweep_id"] for r in rows} == {summary["sweep_id"]}
    losses = [r["metric.loss"] for r in rows]
    assert losses == sorted(losses)
    assert rows[0]["execution_id"] == summary["best"]["execution_id"]
    assert all(r["param.epochs"] == 4 and isinstance(r["trial_number"], int) for r in rows)


def test_ls_descending_limit_and_csv(swept: tuple[Path, dict]) -> None:
    project, summary = swept
    out = sweep_cli(
        "ls",
        "--sweep",
        summary["sweep_id"],
        "--sort",
        "-metric.loss",
        "--limit",
        "2",
        "--format",
        "csv",
        cwd=project,
        check=True,
    ).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 2
    assert float(rows[0]["metric.loss"]) >= float(rows[1]["metric.loss"])
    everything = json.loads(sweep_cli("ls", "--format", "json", cwd=project, check=True).stdout)
    assert len(everything) == 6 + 3  # the sweep's trials and the pipeline's three nodes
    steps = json.loads(
        sweep_cli(
            "ls", "--step", "evaluate-model", "--format", "json", cwd=project, check=True
        ).stdout
    )
    assert [r["step"] for r in steps] == ["evaluate-model"]


def test_ls_bad_sort_column_is_one_clear_error(swept: tuple[Path, dict]) -> None:
    project, _ = swept
    proc = sweep_cli("ls", "--sort", "metric.nope", cwd=project)
    assert proc.returncode != 0
    assert 'cannot sort by "metric.nope"' in proc.stderr and "Traceback" not in proc.stderr


def test_compare_shows_parameters_side_by_side(swept: tuple[Path, dict]) -> None:
    project, _ = swept
    rows = json.loads(
        sweep_cli("ls", "--sweep", "--format", "json", cwd=project, check=True).stdout
    )
    a, b = rows[0]["execution_id"], rows[1]["execution_id"]
    compared = json.loads(sweep_cli("compare", a, b, "--json", cwd=project, check=True).stdout)
    assert set(compared) == {a, b}
    assert compared[a]["param.learning_rate"] == rows[0]["param.learning_rate"]
    assert compared[b]["metric.loss"] == rows[1]["metric.loss"]
    table = sweep_cli("compare", a, b, cwd=project, check=True).stdout
    assert "param.learning_rate" in table


def test_lineage_follows_the_pipeline(swept: tuple[Path, dict]) -> None:
    project, _ = swept
    evaluate = json.loads(
        sweep_cli(
            "ls", "--step", "evaluate-model", "--format", "json", cwd=project, check=True
        ).stdout
    )[0]
    graph = json.loads(
        sweep_cli("lineage", evaluate["execution_id"], "--json", cwd=project, check=True).stdout
    )
    upstream_steps = {n.get("step") for n in graph["nodes"] if n["id"] in graph["upstream"]}
    assert {"train-model", "preprocess-dataset"} <= upstream_steps
    tree = sweep_cli("lineage", evaluate["execution_id"], cwd=project, check=True).stdout
    assert "preprocess-dataset" in tree and "model.npz" in tree


def test_plot_writes_readable_pngs(swept: tuple[Path, dict], tmp_path: Path) -> None:
    project, summary = swept
    out = sweep_cli(
        "plot", summary["sweep_id"], "-o", str(tmp_path), cwd=project, check=True
    ).stdout
    names = {Path(line).name for line in out.split()}
    assert {"history.png", "importances.png", "parallel_coordinate.png", "top_trials.png"} <= names
    for name in names:
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000


def test_compact_keeps_what_readers_see_and_doctor_finds_damage(swept: tuple[Path, dict]) -> None:
    project, _ = swept
    before = json.loads(sweep_cli("ls", "--format", "json", cwd=project, check=True).stdout)
    sweep_cli("compact", cwd=project, check=True)
    after = json.loads(sweep_cli("ls", "--format", "json", cwd=project, check=True).stdout)
    assert sorted(r["execution_id"] for r in after) == sorted(r["execution_id"] for r in before)
    parts = sorted((project / ".sweeper" / "datasets" / "executions").glob("part-*.parquet"))
    assert len(parts) == 1
    assert sweep_cli("doctor", cwd=project).returncode == 0
    (broken,) = (project / ".sweeper" / "datasets" / "metrics").glob("part-*.parquet")
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])  # truncated on disk
    proc = sweep_cli("doctor", cwd=project)
    assert proc.returncode == 1 and broken.name in proc.stdout
    assert sweep_cli("doctor", "--quarantine", cwd=project).returncode == 0
    assert not broken.exists()
