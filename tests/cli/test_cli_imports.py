"""The quick commands import only what they use: `sweep lint` never loads Ray.

Each command runs in a fresh Python (as a user runs it) that reports, after the command, which
top-level modules it imported. Heavy libraries (Ray, Optuna, pandas, pyarrow, matplotlib, the
Docker SDK) each cost 0.2-0.6 s to import; the commands that do not need them must not pay.
No timing here: the benchmarks' `cli` case measures the wall time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest

from tests.conftest import EXAMPLE, sweep_cli

#: Runs ``sweep ARGS`` through the real entry point, then writes what it imported as JSON.
CHILD = """
import json, os, sys
from sweeper.cli.main import main
code = 0
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code or 0
with open(os.environ["SWEEP_IMPORTS_REPORT"], "w") as report:
    json.dump(
        {
            "code": code,
            "modules": sorted({m.split(".")[0] for m in sys.modules}),
            "all": sorted(sys.modules),
        },
        report,
    )
"""

HEAVY = ("ray", "optuna", "pandas", "pyarrow", "matplotlib", "docker")
#: What fetching inputs (http, https) brings in: only for commands that run something.
FETCHERS = ("ssl", "http", "email")


def imported(report: dict[str, Any], *names: str) -> list[str]:
    """Which of ``names`` (packages or modules) the command imported, itself or a submodule."""
    return [
        name for name in names if any(m == name or m.startswith(name + ".") for m in report["all"])
    ]


def run_reporting(
    args: list[str], cwd: Path, tmp_path: Path
) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    """Run ``sweep ARGS`` in a fresh interpreter; its report and the finished process."""
    report = tmp_path / f"imports-{len(list(tmp_path.glob('imports-*')))}.json"
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SWEEP_IMPORTS_REPORT": str(report)},
    )
    assert report.is_file(), f"sweep {' '.join(args)} wrote no report:\n{proc.stderr}"
    return json.loads(report.read_text()), proc


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--help"], "lint      "),
        (["lint"], "valohai.yaml: ok"),
        (["steps"], "train-model"),
        (
            ["run", "train-model", "--dry-run", "-p", "epochs=3"],
            "python ./train_model.py --epochs=3 ",
        ),
    ],
    ids=["help", "lint", "steps", "run-dry-run"],
)
def test_config_commands_import_no_heavy_library(
    example_project: Path, tmp_path: Path, args: list[str], expected: str
) -> None:
    report, proc = run_reporting(args, example_project, tmp_path)
    assert report["code"] == 0, proc.stderr
    assert expected in proc.stdout + proc.stderr
    assert [m for m in HEAVY if m in report["modules"]] == []
    # nor the input fetchers (urllib.request, ssl) nor the runner and the sweep code
    assert imported(report, *FETCHERS, "sweeper.execution.inputs", "sweeper.sweep") == []
    if args[0] != "steps":  # the one that prints a table
        assert imported(report, "rich") == []


def test_lint_of_a_broken_file_reports_without_ray(make_project: Any, tmp_path: Path) -> None:
    project = make_project("- step:\n    name: train\n    image: python:3.12\n")
    report, proc = run_reporting(["lint"], project, tmp_path)
    assert report["code"] == 1
    assert "valohai.yaml:" in proc.stdout and "error" in proc.stdout
    assert "ray" not in report["modules"]


@pytest.fixture(scope="module")
def swept_project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The bundled example after a `sweep run` of two steps and a 3-trial sweep (one real Ray).

    The two steps have different parameters, so the store's parts differ in their columns and
    a read merges schemas.
    """
    project = tmp_path_factory.mktemp("cli-imports") / "project"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".sweeper", "__pycache__"))
    sweep_cli("run", "preprocess-dataset", "--runtime", "local", cwd=project, check=True)
    sweep_cli("run", "train-model", "--runtime", "local", "-p", "epochs=2", cwd=project, check=True)
    summary = json.loads(
        sweep_cli(
            "train-model",
            "--trials",
            "3",
            "--runtime",
            "local",
            "--seed",
            "1",
            "-p",
            "epochs=2",
            "--json",
            cwd=project,
            check=True,
        ).stdout
    )
    return project, summary


@pytest.mark.ray
def test_status_reads_the_study_without_ray_or_pandas(
    swept_project: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    project, summary = swept_project
    report, proc = run_reporting(["status"], project, tmp_path)
    assert report["code"] == 0, proc.stderr
    assert f"sweep {summary['sweep_id']} (complete)" in proc.stdout
    assert "complete 3, failed 0" in proc.stdout
    assert [m for m in ("ray", "pandas", "matplotlib", "docker") if m in report["modules"]] == []
    # the study and sweep.json are enough: not the valohai.yaml, the runner or warm-start code
    assert imported(report, "yaml", "sweeper.config", "sweeper.execution", "rich") == []
    assert imported(report, "sweeper.sweep.history", "sweeper.sweep.engine") == []


@pytest.mark.ray
def test_ls_reads_parquet_without_pandas(
    swept_project: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    project, summary = swept_project
    report, proc = run_reporting(["ls"], project, tmp_path)
    assert report["code"] == 0, proc.stderr
    assert proc.stdout.count("train-model") == 4  # the plain run and the 3 trials
    assert proc.stdout.count("preprocess-dataset") == 1
    assert "metric.loss" in proc.stdout
    assert [
        m for m in ("ray", "pandas", "optuna", "matplotlib", "docker") if m in report["modules"]
    ] == []
    # ls reads the store only: not the valohai.yaml, the runner or the sweep code
    assert imported(report, "yaml", "sweeper.config", "sweeper.execution", "sweeper.sweep") == []

    report, proc = run_reporting(
        ["ls", "--sweep", "--sort", "-metric.loss", "--limit", "2", "--format", "json"],
        project,
        tmp_path,
    )
    assert report["code"] == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["sweep_id"] for r in rows] == [summary["sweep_id"]] * 2
    assert rows[0]["metric.loss"] >= rows[1]["metric.loss"]
    assert all(r["created_at"].endswith("+00:00") for r in rows)
    assert "pandas" not in report["modules"]

    # a few rows of many are converted one by one, the whole listing at once: the same rows
    for order in ([], ["--sort", "-metric.loss"]):
        listing = json.loads(
            sweep_cli("ls", "--format", "json", *order, cwd=project, check=True).stdout
        )
        assert len(listing) == 5 and all(r["created_at"].endswith("+00:00") for r in listing)
        for limit in (1, 2, -4):
            head = sweep_cli(
                "ls", "--format", "json", *order, "--limit", str(limit), cwd=project, check=True
            )
            assert json.loads(head.stdout) == listing[:limit]


def test_help_lists_each_command_with_its_own_short_help() -> None:
    """The table in main.py says what each command's own help says, at any terminal width."""
    from sweeper.cli import (
        commands_dashboard,
        commands_deploy,
        commands_exec,
        commands_pipeline,
        commands_results,
        commands_sweep,
        commands_verify,
        main,
    )

    modules = (
        commands_dashboard,
        commands_deploy,
        commands_exec,
        commands_pipeline,
        commands_results,
        commands_sweep,
        commands_verify,
    )
    assert {c.name for m in modules for c in m.COMMANDS} == set(main.COMMANDS)
    ctx = click.Context(main.cli)
    for width in (60, 80, 100, 200):
        lazy, eager = click.HelpFormatter(width=width), click.HelpFormatter(width=width)
        main.cli.format_commands(ctx, lazy)
        for name in main.COMMANDS:
            assert main.cli.get_command(ctx, name) is not None  # loads the real command
        click.Group.format_commands(main.cli, ctx, eager)  # click's own, from the commands
        assert lazy.getvalue() == eager.getvalue()
        assert all(f"  {name} " in lazy.getvalue() for name in main.COMMANDS)


def test_a_step_name_still_means_sweep_and_an_unknown_word_is_one_clear_error(
    example_project: Path,
) -> None:
    proc = sweep_cli("no-such-step", "--trials", "1", cwd=example_project)
    assert proc.returncode == 2
    assert proc.stderr.startswith('sweep: error: unknown step "no-such-step"; known steps: ')
    assert "Traceback" not in proc.stderr
    proc = sweep_cli("train-model", "--help", cwd=example_project, check=True)
    assert "Sweep STEP: run N trials" in proc.stdout
