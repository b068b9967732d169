"""Lint a valohai.yaml: every error and warning at once, each with its file and line."""

from __future__ import annotations

import os

from sweeper.config.config import _parse, read_text
from sweeper.config.problems import Problem, Problems


def lint_text(text: str, filename: str = "valohai.yaml") -> list[Problem]:
    """Every problem in ``text``, ordered by line; errors and warnings are told apart by ``level``."""
    _, problems, _ = _parse(text, filename)
    return problems.sorted()


def lint_file(path: str | os.PathLike[str]) -> list[Problem]:
    """Every problem in the file at ``path`` (a missing or unreadable file is one error)."""
    filename = os.fspath(path)
    problems = Problems(filename)
    text = read_text(path, problems)
    if text is None:
        return problems.sorted()
    return lint_text(text, filename)


__all__ = ["lint_file", "lint_text"]
