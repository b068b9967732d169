"""The package boundaries of docs/architecture.md, checked on the source text of sweeper/.

Three rules, each a ratchet: ``ALLOWED_*`` holds how many offending sites each file had when
the rule was written, so the suite is green today and fails on any *new* site (in a new file,
or one more in a listed file). A package that cleans a file lowers or removes its entry; an
entry never goes up. Docstrings and comments are prose and do not count.

1. Runtime knowledge stays in ``sweeper/runtime/``: no ``"docker"`` string and no import of
   ``sweeper.runtime.docker`` elsewhere (a new runtime is its module plus one ``RUNTIMES`` line).
2. Store paths are built only in ``sweeper/store/``: no ``sweeps/``, ``pipelines/``,
   ``executions/``, ``execution.json``, ``logs.txt``, ``sweep.json``, ``run.json`` or
   ``optuna.journal`` in a string (f-string parts included), and no ``… / "sweeps"`` join.
3. What crosses a boundary is typed: no parameter named store, step, config, task or record
   annotated plain ``Any`` (or ``Any | None``).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SWEEPER = Path(__file__).resolve().parents[1] / "sweeper"

#: Rule 1: files outside sweeper/runtime/ that name Docker, and how many times.
ALLOWED_DOCKER: dict[str, int] = {}

#: Rule 2: files outside sweeper/store/ that build store paths, and how many sites.
ALLOWED_STORE_PATHS: dict[str, int] = {
    # Valohai's own /valohai/config/execution.json in the work folder, not a store path.
    "sweeper/execution/runner.py": 1,
}

#: Rule 3: files with a store/step/config/task/record parameter typed ``Any``, and how many.
ALLOWED_ANY_PARAMETERS: dict[str, int] = {}

STORE_PATH = re.compile(
    r"(^|/)(sweeps|pipelines|executions)/|execution\.json|logs\.txt|sweep\.json|run\.json"
    r"|optuna\.journal"
)
STORE_DIRS = {"sweeps", "pipelines", "executions"}
TYPED_NAMES = {"store", "step", "config", "task", "record"}
ANY_ANNOTATIONS = {"Any", "Any | None", "Optional[Any]", "None | Any"}


def sources() -> Iterator[tuple[str, ast.Module]]:
    """Each module of sweeper/ as (path relative to the repository, its syntax tree)."""
    for path in sorted(SWEEPER.rglob("*.py")):
        yield path.relative_to(SWEEPER.parent).as_posix(), ast.parse(path.read_text())


def _docstrings(tree: ast.Module) -> set[int]:
    """The ids of string statements (docstrings and bare strings): prose, not code."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }


def _strings(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, text) of every string constant in code, f-string parts included."""
    prose = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
            yield node.lineno, node.value


def docker_sites(tree: ast.Module) -> list[int]:
    """Lines that name the Docker runtime: a ``"docker"`` string or an import of its module."""
    lines = [line for line, text in _strings(tree) if text == "docker"]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "sweeper.runtime.docker"
        ):
            lines.append(node.lineno)
        elif isinstance(node, ast.Import) and any(
            alias.name.startswith("sweeper.runtime.docker") for alias in node.names
        ):
            lines.append(node.lineno)
    return sorted(lines)


def store_path_sites(tree: ast.Module) -> list[int]:
    """Lines that spell the store's layout: a path string, or ``something / "sweeps"``."""
    lines = {line for line, text in _strings(tree) if STORE_PATH.search(text)}
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            for side in (node.left, node.right):
                if isinstance(side, ast.Constant) and side.value in STORE_DIRS:
                    lines.add(side.lineno)
    return sorted(lines)


def any_parameter_sites(tree: ast.Module) -> list[int]:
    """Lines of parameters named like a domain object but annotated ``Any``."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = node.args
            for arg in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]:
                if (
                    arg.arg in TYPED_NAMES
                    and arg.annotation is not None
                    and ast.unparse(arg.annotation) in ANY_ANNOTATIONS
                ):
                    lines.append(arg.lineno)
    return lines


def offenders(find: Callable[[ast.Module], list[int]], outside: str) -> dict[str, list[int]]:
    """Files (not under ``outside``) where ``find`` reports sites, with their lines."""
    found = {}
    for name, tree in sources():
        if name.startswith(outside):
            continue
        lines = find(tree)
        if lines:
            found[name] = sorted(lines)
    return found


def new_sites(found: dict[str, list[int]], allowed: dict[str, int]) -> list[str]:
    """``file: lines`` for each file with more sites than ``allowed`` lets it have."""
    return [
        f"{name}: lines {', '.join(map(str, lines))} ({len(lines)} sites, {allowed.get(name, 0)} allowed)"
        for name, lines in sorted(found.items())
        if len(lines) > allowed.get(name, 0)
    ]


RULES = {
    "docker outside sweeper/runtime/": (docker_sites, "sweeper/runtime/", ALLOWED_DOCKER),
    "store paths outside sweeper/store/": (
        store_path_sites,
        "sweeper/store/",
        ALLOWED_STORE_PATHS,
    ),
    "Any-typed store/step/config/task/record parameters": (
        any_parameter_sites,
        "\0",  # every file
        ALLOWED_ANY_PARAMETERS,
    ),
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_no_new_offender(rule: str) -> None:
    find, outside, allowed = RULES[rule]
    assert new_sites(offenders(find, outside), allowed) == [], (
        f"{rule}: move this into the package that owns it (docs/architecture.md)"
    )


def test_each_rule_sees_what_it_forbids() -> None:
    """The finders catch each way of writing an offence, and skip prose."""
    code = ast.parse(
        '"""Docs may say "docker" and sweeps/<id>/sweep.json."""\n'
        "from sweeper.runtime.docker import MOUNT_POINT\n"
        'def f(store: Any, step: Any | None, record: dict, sweep_id: str = "docker") -> None:\n'
        '    path = f"sweeps/{sweep_id}/optuna.journal"\n'
        '    other = root / "pipelines" / sweep_id\n'
        '    log = directory + "/logs.txt"\n'
    )
    assert docker_sites(code) == [2, 3]
    assert store_path_sites(code) == [4, 5, 6]
    assert any_parameter_sites(code) == [3, 3]
