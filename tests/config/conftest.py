"""Helpers for the config tests: fixture files and problem rendering."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sweeper.config import Config, lint_text, load_config

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def full() -> Config:
    """The fixture that uses every field."""
    return load_config(DATA / "full.yaml")


def problems(text: str) -> list[str]:
    """Lint dedented ``text`` and render each problem as a string."""
    return [str(p) for p in lint_text(textwrap.dedent(text).lstrip("\n"), "valohai.yaml")]


def errors(text: str) -> list[str]:
    """Only the errors of :func:`problems`."""
    return [p for p in problems(text) if ": error: " in p]


def refusals(text: str) -> list[str]:
    """What stops an item from running: the errors, and the warnings that block a run
    (what Valohai accepts but sweeper cannot run), each without its location and level."""
    found = lint_text(textwrap.dedent(text).lstrip("\n"), "valohai.yaml")
    return [p.message for p in found if p.level == "error" or p.blocks_run]


STEP = """\
- step:
    name: train
    image: python:3.12
    command: python train.py {parameters}
"""


#: Differential test tallies (test_compat.py): [agreeing, compared] for files and renders.
COMPAT: dict[str, list[int]] = {"files": [0, 0], "renders": [0, 0]}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the differential test's figures: ``compat: files A/B, renders X/Y``."""
    files, renders = COMPAT["files"], COMPAT["renders"]
    if files[1]:
        terminalreporter.write_line(
            f"compat: files {files[0]}/{files[1]}, renders {renders[0]}/{renders[1]}"
        )
