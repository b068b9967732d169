"""The package boundaries of docs/architecture.md and the figures of issue 22, as ratchets.

Each check is measured on the source text of sweeper/ by ``tests/architecture_figures.py``
(whose docstring defines each one precisely; docstrings and comments never count).
``ALLOWED_*`` holds how many sites each file had when the check was written, so the suite is
green today and fails on any *new* site, naming its file and line (in a new file, or one more
in a listed file). A change that cleans a file lowers or removes its entry; an entry never
goes up.

``python tests/test_boundaries.py`` prints every figure as a table (``--sites`` lists where).
"""

from __future__ import annotations

import ast
import sys

import pytest

try:
    from tests import architecture_figures as figures
except ModuleNotFoundError:  # run as a script: tests/ itself is on the path
    import architecture_figures as figures

Allowed = dict[str, int]

#: Files outside sweeper/runtime/ that name Docker.
ALLOWED_DOCKER: Allowed = {}

#: Files outside sweeper/store/ that build store paths.
ALLOWED_STORE_PATHS: Allowed = {
    # Valohai's own /valohai/config/execution.json in the work folder, not a store path.
    "sweeper/execution/runner.py": 1,
}

#: Files with a store/step/config/task/record parameter typed ``Any``.
ALLOWED_ANY_PARAMETERS: Allowed = {}

#: Import cycles, each a set of modules; a cycle may shrink or go, never grow or appear.
ALLOWED_CYCLES: list[set[str]] = []

#: Files of sweeper/store/ that import ``sweeper.execution``: the store sits below it.
ALLOWED_STORE_EXECUTION_IMPORTS: Allowed = {}

#: Policies that reach into a runner (``runner.x``, ``self.runner.x``).
ALLOWED_RUNNER_REACHES: Allowed = {}

#: Calls of another object's private method (``x._name(...)``).
ALLOWED_PRIVATE_CALLS: Allowed = {
    # docker-py has no public call that sends the wait before the start and returns once the
    # daemon registered it (what `docker run` does, so an exit right after start is seen)
    "sweeper/runtime/docker_container.py": 3,
}

#: ``record[...]``/``record.get(...)`` (and on ``summary``) outside the record and the store.
ALLOWED_RECORD_KEYS: Allowed = {}

#: ``record``/``summary`` parameters typed as a dict or a Mapping.
ALLOWED_DICT_RECORDS: Allowed = {
    # the store's own serialization: the record's stored JSON form -> dataset rows
    "sweeper/store/_rows.py": 2,
}

#: Error messages' text tested outside a legacy fallback.
ALLOWED_FAILURE_PHRASES: Allowed = {}

#: Functions over 80 lines.
ALLOWED_FUNCTIONS_OVER_80: Allowed = {}

#: Functions over 50 lines.
ALLOWED_FUNCTIONS_OVER_50: Allowed = {}

#: Classes over 350 lines.
ALLOWED_CLASSES_OVER_350: Allowed = {
    "sweeper/store/_store.py": 1,  # the Store facade: records, logs, blobs, sweeps, datasets
    # SweepPolicy (about 370 lines): the free and the reproducible modes' asking and telling
    # (issue 28) in one class; within issue 22's target (at most 2), until the reproducible
    # mode becomes a subclass of its own
    "sweeper/sweep/policy.py": 1,
}

#: Modules over 600 lines.
ALLOWED_MODULES_OVER_600: Allowed = {}

#: ``duplicates`` pairs in sweeper/: all of them, and those not marked boilerplate.
ALLOWED_DUPLICATE_PAIRS = 38
ALLOWED_PRODUCT_DUPLICATE_PAIRS = 7

#: Each per-file check: its finder (tests/architecture_figures.py) and its allowance.
CHECKS: dict[str, tuple[str, Allowed]] = {
    "docker": ("docker", ALLOWED_DOCKER),
    "store paths": ("store paths", ALLOWED_STORE_PATHS),
    "Any parameters": ("Any parameters", ALLOWED_ANY_PARAMETERS),
    "store imports of sweeper.execution": (
        "store imports of sweeper.execution",
        ALLOWED_STORE_EXECUTION_IMPORTS,
    ),
    "runner reaches": ("runner reaches", ALLOWED_RUNNER_REACHES),
    "private calls": ("private calls", ALLOWED_PRIVATE_CALLS),
    "record keys": ("record keys", ALLOWED_RECORD_KEYS),
    "dict records": ("dict records", ALLOWED_DICT_RECORDS),
    "failure phrases": ("failure phrases", ALLOWED_FAILURE_PHRASES),
    "functions over 80 lines": ("functions over 80 lines", ALLOWED_FUNCTIONS_OVER_80),
    "functions over 50 lines": ("functions over 50 lines", ALLOWED_FUNCTIONS_OVER_50),
    "classes over 350 lines": ("classes over 350 lines", ALLOWED_CLASSES_OVER_350),
    "modules over 600 lines": ("modules over 600 lines", ALLOWED_MODULES_OVER_600),
}


def new_sites(found: figures.Sites, allowed: Allowed) -> list[str]:
    """``file: lines`` for each file with more sites than ``allowed`` lets it have."""
    return [
        f"{name}: lines {', '.join(map(str, lines))} ({len(lines)} sites, {allowed.get(name, 0)} allowed)"
        for name, lines in sorted(found.items())
        if len(lines) > allowed.get(name, 0)
    ]


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_no_new_offender(check: str) -> None:
    finder, allowed = CHECKS[check]
    assert new_sites(figures.FINDERS[finder].sites(), allowed) == [], (
        f"{figures.FINDERS[finder].title}: see docs/architecture.md for where this belongs"
    )


def new_cycles(cycles: list[list[str]], allowed: list[set[str]]) -> list[list[str]]:
    """The cycles that are not within one of ``allowed``: new, or grown."""
    return [cycle for cycle in cycles if not any(set(cycle) <= known for known in allowed)]


def test_no_new_import_cycle() -> None:
    edges = figures.import_edges(figures.sources())
    grown = new_cycles(figures.strongly_connected(edges), ALLOWED_CYCLES)
    assert [figures.cycle_sites(cycle, edges) for cycle in grown] == [], (
        "an import cycle appeared or grew (function-local and TYPE_CHECKING imports count): "
        "move what both sides need down a floor (docs/architecture.md)"
    )


def test_duplicates_do_not_grow() -> None:
    found = figures.duplicates()
    if found is None:
        pytest.skip("the `duplicates` command is not installed here (or did not finish)")
    assert found.pairs <= ALLOWED_DUPLICATE_PAIRS, "\n".join(found.rows)
    assert found.product <= ALLOWED_PRODUCT_DUPLICATE_PAIRS, "\n".join(
        row for row in found.rows if "boilerplate" not in row
    )


def _sources(files: dict[str, str]) -> list[tuple[str, ast.Module]]:
    return [(name, ast.parse(text)) for name, text in sorted(files.items())]


def test_each_rule_sees_what_it_forbids() -> None:
    """The boundary finders catch each way of writing an offence, and skip prose."""
    code = ast.parse(
        '"""Docs may say "docker" and sweeps/<id>/sweep.json."""\n'
        "from sweeper.runtime.docker import MOUNT_POINT\n"
        'def f(store: Any, step: Any | None, record: dict, sweep_id: str = "docker") -> None:\n'
        '    path = f"sweeps/{sweep_id}/optuna.journal"\n'
        '    other = root / "pipelines" / sweep_id\n'
        '    log = directory + "/logs.txt"\n'
    )
    assert figures.docker_sites(code) == [2, 3]
    assert figures.store_path_sites(code) == [4, 5, 6]
    assert figures.any_parameter_sites(code) == [3, 3]


def test_cycles_count_function_local_and_type_checking_imports() -> None:
    """Every kind of import closes a cycle; a lazy package's re-declarations do not."""
    trees = _sources(
        {
            # a -> b inside a function, b -> a for the type checker only: a cycle
            "sweeper/a.py": "def f():\n    from sweeper import b\n",
            "sweeper/b.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from sweeper.a import f\n"
            ),
            # a lazy package: `from sweeper.p import Thing` loads sweeper.p.m
            "sweeper/p/__init__.py": (
                "from typing import TYPE_CHECKING\n"
                "from sweeper._lazy import lazy_attributes\n"
                "if TYPE_CHECKING:\n    from sweeper.p.m import Thing\n"
                '__getattr__ = lazy_attributes(__name__, {"Thing": "sweeper.p.m"})\n'
            ),
            "sweeper/p/m.py": "from .. import c\nclass Thing: ...\n",
            "sweeper/c.py": "from sweeper.p import Thing\n",
            # p/n imports the lazy package: no cycle through p's TYPE_CHECKING imports
            "sweeper/p/n.py": "import sweeper.p\nfrom sweeper.p.m import Thing\n",
            "sweeper/_lazy.py": "import importlib\n",
            "sweeper/d.py": "import sweeper.d\n",  # a module importing itself: no cycle
        }
    )
    assert figures.strongly_connected(figures.import_edges(trees)) == [
        ["sweeper.a", "sweeper.b"],
        ["sweeper.c", "sweeper.p.m"],
    ]
    grown = [["sweeper.a", "sweeper.b", "sweeper.c"]]
    assert new_cycles(grown, [{"sweeper.a", "sweeper.b"}]) == grown
    assert new_cycles([["sweeper.a", "sweeper.b"]], [{"sweeper.a", "sweeper.b", "x"}]) == []


def test_each_figure_sees_what_it_forbids() -> None:
    """Each finder of issue 22's Checks catches what it forbids, and only that."""
    store = ast.parse(
        "from sweeper.execution.runner import planned_record\n"
        "from ..execution import spec\n"
        "from sweeper import execution\n"
        "from sweeper.record import ExecutionRecord\n"
    )
    assert figures.execution_import_sites("sweeper/store/_x.py", store) == [1, 2, 3]

    policy = ast.parse(
        "class P(Policy):\n"
        "    def start(self, runner):\n"
        "        self.options = runner.options\n"
        "        self.runner.state.create(self.runner)\n"
        "        self._tell()\n"
        "        cls._make()\n"
        "        super()._hook()\n"
        "        other._private()\n"
        "        token._replace(string='x')\n"
        "        obj.__mangled()\n"
    )
    assert figures.is_policy_module("sweeper/anywhere.py", policy)
    assert not figures.is_policy_module("sweeper/x.py", ast.parse("class Q(Base): ..."))
    assert figures.runner_reach_sites(policy) == [3, 4]
    assert figures.private_call_sites(policy) == [8]

    records = ast.parse(
        "def f(record: dict[str, Any], summary: Mapping | None, other: dict, x: 'dict'):\n"
        "    a = record['status'] or summary.get('best')\n"
        "    b = self.record.get('error')\n"
        "    c = record.status\n"
        "def g(record: ExecutionRecord, summary: 'Mapping[str, Any]'): ...\n"
    )
    assert sorted(figures.record_key_sites(records)) == [2, 2, 3]
    assert figures.dict_record_parameter_sites(records) == [1, 1, 5]

    failures = ast.parse(
        "def failure_class(record, log_text):\n"
        '    error = str(record.get("error") or "")\n'
        '    if "OOM killer" in error or _INFRA.search(record.error):\n'
        "        return 1\n"
        '    if error.startswith("time limit") or re.match(r"x", record["error"]):\n'
        "        return 2\n"
        "    if any(_OOM_LINE.search(line) for line in log_text.splitlines()):\n"
        "        return 3\n"
        "def legacy_failure_class(message):\n"
        '    return "Ray actor" in message or _INFRA.search(message)\n'
    )
    assert figures.is_failure_module("sweeper/sweep/failures.py")
    assert sorted(figures.failure_phrase_sites(failures)) == [3, 3, 5, 5]

    sizes = ast.parse(
        "class Big:\n"
        + "    x = 1\n" * 350
        + "def long():\n"
        + "    pass\n" * 80
        + "def longish():\n"
        + "    pass\n" * 50
        + "def short():\n"
        + "    pass\n" * 49
    )
    assert figures.long_class_sites(sizes) == [1]
    assert figures.long_function_sites(sizes, figures.LONG_FUNCTION) == [352]
    assert figures.long_function_sites(sizes, figures.LONGISH_FUNCTION) == [352, 433]


def test_new_sites_name_file_and_lines() -> None:
    found = {"sweeper/a.py": [3, 9], "sweeper/b.py": [4]}
    assert new_sites(found, {"sweeper/a.py": 2}) == ["sweeper/b.py: lines 4 (1 sites, 0 allowed)"]
    assert new_sites(found, {"sweeper/a.py": 1, "sweeper/b.py": 1}) == [
        "sweeper/a.py: lines 3, 9 (2 sites, 1 allowed)"
    ]


# --- the figures table ----------------------------------------------------------------------


def figure_rows() -> list[tuple[str, str, str]]:
    """(check, value now, allowed) for each figure, in the order of issue 22's Checks table."""

    def total(check: str) -> int:
        return sum(len(lines) for lines in figures.FINDERS[CHECKS[check][0]].sites().values())

    def allowed(*checks: str) -> str:
        return " / ".join(str(sum(CHECKS[check][1].values())) for check in checks)

    edges = figures.import_edges(figures.sources())
    found = figures.duplicates()
    rows = [
        (
            "import cycles among sweeper/ modules",
            str(len(figures.strongly_connected(edges))),
            str(len(ALLOWED_CYCLES)),
        ),
    ]
    for title, checks in [
        (
            "imports of sweeper.execution from sweeper/store/",
            ["store imports of sweeper.execution"],
        ),
        ("runner. reaches in the policies / private calls", ["runner reaches", "private calls"]),
        ("record[...]/record.get(...) outside the record and the store", ["record keys"]),
        ("record/summary parameters typed dict/Mapping", ["dict records"]),
        ("failure phrases parsed outside a legacy fallback", ["failure phrases"]),
        (
            "functions over 80 / over 50 lines",
            ["functions over 80 lines", "functions over 50 lines"],
        ),
        (
            "classes over 350 / modules over 600 lines",
            ["classes over 350 lines", "modules over 600 lines"],
        ),
        (
            "docker / store paths / Any parameters (docs/architecture.md)",
            ["docker", "store paths", "Any parameters"],
        ),
    ]:
        rows.append((title, " / ".join(str(total(check)) for check in checks), allowed(*checks)))
    rows.append(
        (
            "duplicates pairs (not boilerplate)",
            "not measured" if found is None else f"{found.pairs} ({found.product})",
            f"{ALLOWED_DUPLICATE_PAIRS} ({ALLOWED_PRODUCT_DUPLICATE_PAIRS})",
        )
    )
    return rows


def print_figures(with_sites: bool) -> None:
    """The table of figures, and with ``with_sites`` where each site is."""
    rows = [("check", "now", "allowed"), *figure_rows()]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for number, row in enumerate(rows):
        print(
            "| "
            + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            + " |"
        )
        if number == 0:
            print("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    edges = figures.import_edges(figures.sources())
    print()
    for cycle in figures.strongly_connected(edges):
        print("cycle: " + " <-> ".join(cycle))
        if with_sites:
            for site in figures.cycle_sites(cycle, edges):
                print(f"    {site}")
    if with_sites:
        for check, (finder, _) in CHECKS.items():
            for name, lines in sorted(figures.FINDERS[finder].sites().items()):
                print(f"{check}: {name}: {', '.join(map(str, lines))}")


if __name__ == "__main__":
    print_figures(with_sites="--sites" in sys.argv[1:])


#: sweeper/deploy/ sits beside results/ (docs/architecture.md, "Layers"): it imports none
#: of these, and only the CLI, the API (and, next, pipeline/) import it.
DEPLOY_MAY_NOT_IMPORT = ("sweeper.cli", "sweeper.api", "sweeper.pipeline", "sweeper.sweep")
DEPLOY_IMPORTED_BY = ("sweeper/cli/", "sweeper/api/", "sweeper/deploy/", "sweeper/pipeline/")


def _imported_modules(tree: ast.Module) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):  # function-local imports count
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


def test_deploy_layer_imports_point_one_way() -> None:
    from tests.conftest import REPO

    wrong = []
    for path in sorted((REPO / "sweeper").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        for line, module in _imported_modules(ast.parse(path.read_text())):
            if rel.startswith("sweeper/deploy/") and module.startswith(DEPLOY_MAY_NOT_IMPORT):
                wrong.append(f"{rel}:{line} imports {module}")
            if module.startswith("sweeper.deploy") and not rel.startswith(DEPLOY_IMPORTED_BY):
                wrong.append(f"{rel}:{line} imports {module}")
    assert wrong == []
