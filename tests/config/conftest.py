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


STEP = """\
- step:
    name: train
    image: python:3.12
    command: python train.py {parameters}
"""
