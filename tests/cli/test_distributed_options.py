"""``sweep STEP --task NAME`` for a distributed task refuses the options of a search, which a
group that runs its members once would otherwise ignore without a word (the real command)."""

from __future__ import annotations

from pathlib import Path

from tests.cluster.distributed_project import write_project
from tests.conftest import sweep_cli


def test_search_options_for_a_distributed_task_are_one_error(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p")
    proc = sweep_cli(
        "rendezvous", "--task", "pair", "--trials", "3", "--sampler", "random", "--free-order",
        "--runtime", "local", cwd=project, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert proc.stderr.startswith(
        "sweep: error: --trials, --sampler, --reproducible/--free-order do not apply to the "
        'distributed task "pair": a distributed task runs its members once, together'
    ), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (project / ".sweeper").exists()  # nothing ran, nothing was recorded


def test_one_search_option_is_named_alone(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p")
    proc = sweep_cli(
        "rendezvous", "--task", "pair", "--max-retries", "2", "--runtime", "local",
        cwd=project, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert proc.stderr.startswith(
        'sweep: error: --max-retries does not apply to the distributed task "pair"'
    ), proc.stderr
