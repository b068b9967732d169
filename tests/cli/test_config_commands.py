"""`sweep lint` and `sweep steps` as a user runs them."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import EXAMPLE, sweep_cli


def test_lint_ok_on_the_bundled_example() -> None:
    proc = sweep_cli("lint", str(EXAMPLE / "valohai.yaml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == ""


def test_lint_lists_every_problem_with_its_line_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "valohai.yaml"
    bad.write_text(
        "- step:\n"
        "    name: train\n"
        "    image: python:3.11\n"
        "    command: python train.py\n"
        "    parameters:\n"
        "      - name: lr\n"
        "        type: float\n"
        "        min: low\n"
        "    colour: blue\n"
    )
    proc = sweep_cli("lint", str(bad))
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert any(line.startswith(f"{bad}:8: error:") and "min" in line for line in lines), lines
    assert any(line.startswith(f"{bad}:9: error:") and "colour" in line for line in lines), lines


def test_steps_table_shows_parameters_inputs_and_resources() -> None:
    proc = sweep_cli("steps", "-f", str(EXAMPLE / "valohai.yaml"))
    assert proc.returncode == 0, proc.stderr
    train = next(line for line in proc.stdout.splitlines() if "train-model" in line)
    assert "learning_rate:float" in train and "dataset" in train and "cpu >= 1" in train
    assert "evaluate-model" in proc.stdout and "model, test_data" in proc.stdout
