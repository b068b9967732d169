"""Rules the tests themselves keep, read from their source: no test can be fooled by them.

- Every ``pytest.raises`` names the message (``match=``): the right exception type raised for
  another reason must not pass.
- A test's pytest timeout is above the timeouts of the waits it makes (subprocesses, Ray
  calls) plus ``MARGIN`` for the rest of it: otherwise pytest kills, on a loaded machine, a
  test its own waits would still allow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

TESTS = REPO / "tests"
#: What a test may spend besides its longest wait.
MARGIN = 300
#: ``sweep_cli``'s own timeout when a test gives none.
SWEEP_CLI_WAIT = 300


def _modules() -> list[Path]:
    return sorted(TESTS.rglob("*.py"))


def _number(node: ast.AST) -> float | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    return None


def longest_wait(tree: ast.Module) -> float:
    """The longest timeout a module's code waits with (literal ``timeout=``, ``TIMEOUT*``)."""
    waits = [0.0]
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg in ("timeout", "timeout_s"):
            waits.append(_number(node.value) or 0)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and "TIMEOUT" in t.id for t in node.targets
        ):
            waits.append(_number(node.value) or 0)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "sweep_cli":
            if not any(k.arg == "timeout" for k in node.keywords):
                waits.append(SWEEP_CLI_WAIT)
    return max(waits)


def _timeout_in(expression: ast.AST) -> float | None:
    """N of a ``pytest.mark.timeout(N)`` in ``expression`` (a decorator, ``pytestmark``)."""
    for node in ast.walk(expression):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "pytest.mark.timeout":
            return _number(node.args[0])
    return None


def timeout_marks(tree: ast.Module) -> tuple[float | None, list[float]]:
    """The module's ``pytestmark`` timeout, and those its test functions are marked with."""
    module = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
        ):
            module = _timeout_in(node.value)
    functions = [
        value
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        for decorator in node.decorator_list
        if (value := _timeout_in(decorator)) is not None
    ]
    return module, functions


def test_every_pytest_raises_names_the_message() -> None:
    found = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "pytest.raises":
                if not any(k.arg == "match" for k in node.keywords):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not found, "pytest.raises without match=:\n" + "\n".join(found)


def test_every_test_may_run_longer_than_its_waits(pytestconfig: pytest.Config) -> None:
    default = float(pytestconfig.getini("timeout"))  # pyproject.toml's
    short = []
    for path in _modules():
        tree = ast.parse(path.read_text())
        wait = longest_wait(tree)
        module, functions = timeout_marks(tree)
        # a helper module's waits run in other modules' tests, under the default at least;
        # a module's longest wait runs in its test with the largest limit
        limit = (
            default if not path.name.startswith("test_") else max([module or default, *functions])
        )
        if wait + MARGIN > limit:
            short.append(
                f"{path.relative_to(REPO)}: waits up to {wait:g} s under a {limit:g} s limit"
            )
    assert not short, f"pytest timeout below the longest wait + {MARGIN} s:\n" + "\n".join(short)
