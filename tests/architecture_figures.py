"""The structural figures of issue 22, measured on the source text of sweeper/.

Each finder reads syntax trees (docstrings and comments are prose and never count) and
returns the sites it sees, so that ``tests/test_boundaries.py`` can hold each figure as a
ratchet and ``python tests/test_boundaries.py`` can print them as a table. Nothing here
imports sweeper: the figures are read from the text, as a reviewer would.

The boundaries of docs/architecture.md come first:

- **Docker outside sweeper/runtime/**: a ``"docker"`` string or an import of
  ``sweeper.runtime.docker`` (a new runtime is its module plus one ``RUNTIMES`` line).
- **Store paths outside sweeper/store/**: ``sweeps/``, ``pipelines/``, ``executions/``,
  ``execution.json``, ``logs.txt``, ``sweep.json``, ``run.json`` or ``optuna.journal`` in a
  string (f-string parts included), or a ``… / "sweeps"`` join.
- **Any-typed parameters**: a parameter named store, step, config, task or record annotated
  plain ``Any`` (or ``Any | None``).

Then issue 22's Checks table, precisely:

- **Import cycles**: the graph of imports between sweeper/ modules, counting module-level,
  function-local and ``if TYPE_CHECKING:`` imports alike. ``import a.b`` and ``from a.b import
  c`` are edges to ``a.b``, or to ``a.b.c`` when ``c`` is a submodule; relative forms are
  resolved. A package ``__init__`` with a module ``__getattr__`` (a lazy one, see
  ``sweeper/_lazy.py``) imports only what it imports eagerly: its ``TYPE_CHECKING`` imports
  merely re-declare its lazy names, and ``from package import name`` of such a name is an
  edge to the module the name lives in (the import that triggers). A cycle is a strongly
  connected component of more than one module; an import of a module by itself is no cycle.
- **Store imports of execution**: imports in sweeper/store/ of ``sweeper.execution`` or a
  module below it, as written.
- **Runner reaches**: in a policy module (``sweeper/sweep/policy.py``,
  ``sweeper/pipeline/policy.py`` and any module with a class whose base is named ``Policy``),
  each attribute read on something named ``runner`` (``runner.x``, ``self.runner.x``).
- **Private calls on another object**: ``x._name(...)`` where ``_name`` starts with one
  underscore (``__name`` and dunders do not count, nor a named tuple's public ``_replace``,
  ``_asdict`` and ``_make``) and ``x`` is not ``self``, ``cls`` or ``super()``.
- **Record keys**: ``record[...]``, ``summary[...]``, ``….record[...]`` and ``.get(...)`` on
  the same, outside ``sweeper/record.py`` and ``sweeper/store/``.
- **Dict-typed records**: parameters named ``record`` or ``summary`` annotated ``dict``,
  ``Dict``, ``Mapping`` or ``MutableMapping`` (subscripted or not, ``| None`` allowed).
- **Failure phrases**: in a failure module (``failures.py`` anywhere, ``sweeper/record.py``),
  a test of an error message's text: a regex method (``search``, ``match``, ``fullmatch``,
  ``findall``, ``finditer``) or ``re.<that>`` applied to it, ``"…" in`` it, or its
  ``.startswith``/``.endswith``. The error text is a name ``error`` or ``message``, an
  attribute ``.error``, or ``x["error"]``/``x.get("error")``. A site inside a function whose
  name contains ``legacy`` is the fallback for records written before failure kinds and does
  not count. A log's lines are the step's own words, not ours, and are not error text.
- **Sizes**: a function's or class's span is ``end_lineno - lineno + 1`` of its ``def`` or
  ``class`` (decorators out, docstring in; nested functions count on their own too); a
  module's is its number of lines.
- **Duplicates**: the ``duplicates`` command over sweeper/, its pair count and how many of
  those it marks boilerplate.
"""

from __future__ import annotations

import ast
import functools
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

SWEEPER = Path(__file__).resolve().parents[1] / "sweeper"

#: Size limits of the Checks table: functions, classes, modules (lines).
LONG_FUNCTION = 80
LONGISH_FUNCTION = 50
LONG_CLASS = 350
LONG_MODULE = 600

STORE_PATH = re.compile(
    r"(^|/)(sweeps|pipelines|executions)/|execution\.json|logs\.txt|sweep\.json|run\.json"
    r"|optuna\.journal"
)
STORE_DIRS = {"sweeps", "pipelines", "executions"}
TYPED_NAMES = {"store", "step", "config", "task", "record"}
ANY_ANNOTATIONS = {"Any", "Any | None", "Optional[Any]", "None | Any"}
POLICY_MODULES = {"sweeper/sweep/policy.py", "sweeper/pipeline/policy.py"}
RECORD_OWNERS = ("sweeper/record.py", "sweeper/store/")
RECORD_NAMES = {"record", "summary"}
DICT_TYPES = {"dict", "Dict", "Mapping", "MutableMapping"}
REGEX_METHODS = {"search", "match", "fullmatch", "findall", "finditer"}
ERROR_NAMES = {"error", "message"}

Sites = dict[str, list[int]]


@functools.cache
def sources(root: Path = SWEEPER) -> tuple[tuple[str, ast.Module], ...]:
    """Each module below ``root`` as (path relative to the repository, its syntax tree).

    Read once per process: every figure walks the same trees (none changes them).
    """
    return tuple(
        (path.relative_to(root.parent).as_posix(), ast.parse(path.read_text()))
        for path in sorted(root.rglob("*.py"))
    )


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of string statements (docstrings and bare strings): prose, not code."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }


def strings(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, text) of every string constant in code, f-string parts included."""
    prose = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
            yield node.lineno, node.value


def _functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def _parameters(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.arg]:
    arguments = function.args
    return [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]


# --- imports and cycles -----------------------------------------------------------------------


@dataclass(frozen=True)
class ImportEdge:
    """One import of a sweeper/ module by another: where it is written and what it loads."""

    source: str  # the importing module, dotted
    target: str  # the module the import loads
    stated: str  # the module as written (relative forms resolved), before lazy names
    path: str
    line: int


def module_name(path: str) -> str:
    """``sweeper/a/b.py`` -> ``sweeper.a.b``; ``sweeper/a/__init__.py`` -> ``sweeper.a``."""
    parts = path.removesuffix(".py").split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement, anywhere, with whether it sits under ``if TYPE_CHECKING:``."""

    def visit(
        node: ast.AST, typing_only: bool
    ) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, typing_only
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                yield from visit(child, True)
            for child in node.orelse:
                yield from visit(child, typing_only)
            return
        for child in ast.iter_child_nodes(node):
            yield from visit(child, typing_only)

    yield from visit(tree, False)


def _is_lazy_package(path: str, tree: ast.Module) -> bool:
    """An ``__init__`` with a module ``__getattr__``: it imports its names on first use."""
    if not path.endswith("/__init__.py"):
        return False
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            return True
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "__getattr__" for target in node.targets
        ):
            return True
    return False


def _from_base(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The module a ``from … import`` names, relative forms resolved against ``module``."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, *([node.module] if node.module else [])])


def import_edges(trees: Iterable[tuple[str, ast.Module]]) -> list[ImportEdge]:
    """The imports between sweeper/ modules, as the module docstring defines them."""
    trees = list(trees)
    modules = {module_name(path) for path, _ in trees}

    def known(dotted: str) -> str | None:
        """``dotted`` or the longest prefix of it that is a sweeper/ module."""
        parts = dotted.split(".")
        while parts:
            if ".".join(parts) in modules:
                return ".".join(parts)
            parts.pop()
        return None

    # what each lazy package's names resolve to: its TYPE_CHECKING imports say where they live
    lazy: dict[str, dict[str, str]] = {}
    for path, tree in trees:
        if _is_lazy_package(path, tree):
            package = module_name(path)
            lazy[package] = {}
            for node, typing_only in _imports(tree):
                if typing_only and isinstance(node, ast.ImportFrom):
                    base = _from_base(node, package, is_package=True)
                    for alias in node.names:
                        lazy[package][alias.asname or alias.name] = base

    edges = []
    for path, tree in trees:
        source = module_name(path)
        is_package = path.endswith("/__init__.py")
        for node, typing_only in _imports(tree):
            if typing_only and source in lazy:
                continue  # a lazy package's re-declarations for type checkers
            loaded: list[tuple[str, str]] = []  # (as written, what it loads)
            if isinstance(node, ast.Import):
                loaded = [(alias.name, alias.name) for alias in node.names]
            else:
                base = _from_base(node, source, is_package)
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    if submodule in modules:
                        loaded.append((submodule, submodule))
                    elif alias.name in lazy.get(base, {}):
                        loaded.append((base, lazy[base][alias.name]))
                    else:
                        loaded.append((base, base))
            for stated, target in loaded:
                resolved = known(target)
                if resolved is not None and stated.split(".")[0] == "sweeper":
                    edges.append(ImportEdge(source, resolved, stated, path, node.lineno))
    return edges


def strongly_connected(edges: Iterable[ImportEdge]) -> list[list[str]]:
    """The strongly connected components of more than one module, each sorted (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components)


def import_cycles(trees: Iterable[tuple[str, ast.Module]] | None = None) -> list[list[str]]:
    """The import cycles among sweeper/ modules (strongly connected components)."""
    return strongly_connected(import_edges(sources() if trees is None else trees))


def cycle_sites(component: Iterable[str], edges: Iterable[ImportEdge]) -> list[str]:
    """``file:line source -> target`` for each import inside ``component``."""
    members = set(component)
    return sorted(
        {
            f"{edge.path}:{edge.line} {edge.source} -> {edge.target}"
            for edge in edges
            if edge.source in members and edge.target in members and edge.source != edge.target
        }
    )


# --- per-file finders: each takes a syntax tree and returns the offending lines -----------------


def docker_sites(tree: ast.Module) -> list[int]:
    """Lines that name the Docker runtime: a ``"docker"`` string or an import of its module."""
    lines = [line for line, text in strings(tree) if text == "docker"]
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
    lines = {line for line, text in strings(tree) if STORE_PATH.search(text)}
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            for side in (node.left, node.right):
                if isinstance(side, ast.Constant) and side.value in STORE_DIRS:
                    lines.add(side.lineno)
    return sorted(lines)


def _annotated_parameter_sites(
    tree: ast.Module, names: set[str], annotated: Callable[[ast.expr], bool]
) -> list[int]:
    """Lines of parameters called one of ``names`` whose annotation ``annotated`` accepts."""
    return [
        arg.lineno
        for function in _functions(tree)
        for arg in _parameters(function)
        if arg.arg in names and arg.annotation is not None and annotated(arg.annotation)
    ]


def any_parameter_sites(tree: ast.Module) -> list[int]:
    """Lines of parameters named like a domain object but annotated ``Any``."""
    return _annotated_parameter_sites(
        tree, TYPED_NAMES, lambda annotation: ast.unparse(annotation) in ANY_ANNOTATIONS
    )


def execution_import_sites(name: str, tree: ast.Module) -> list[int]:
    """Lines that import ``sweeper.execution`` (or below it), as written."""
    source = module_name(name)
    is_package = name.endswith("/__init__.py")
    lines = []
    for node, _ in _imports(tree):
        if isinstance(node, ast.Import):
            stated = [alias.name for alias in node.names]
        else:
            base = _from_base(node, source, is_package)
            stated = [base] if node.module or node.level == 0 else []
            # `from sweeper import execution` names the package as a submodule
            stated += [f"{base}.{alias.name}" for alias in node.names]
        if any(s == "sweeper.execution" or s.startswith("sweeper.execution.") for s in stated):
            lines.append(node.lineno)
    return lines


def _named(node: ast.expr, names: set[str]) -> bool:
    """Whether ``node`` is a name in ``names`` or an attribute whose last part is one."""
    return (isinstance(node, ast.Name) and node.id in names) or (
        isinstance(node, ast.Attribute) and node.attr in names
    )


def is_policy_module(name: str, tree: ast.Module) -> bool:
    """The two policy modules, and any module with a class whose base is named ``Policy``."""
    if name in POLICY_MODULES:
        return True
    return any(
        isinstance(node, ast.ClassDef) and any(_named(base, {"Policy"}) for base in node.bases)
        for node in ast.walk(tree)
    )


def runner_reach_sites(tree: ast.Module) -> list[int]:
    """Lines of each attribute read on something named ``runner``."""
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and _named(node.value, {"runner"})
    ]


#: A named tuple's public methods, underscored only to stay out of its fields' way.
NAMEDTUPLE_METHODS = {"_replace", "_asdict", "_make"}


def _is_private(attribute: str) -> bool:
    return (
        attribute.startswith("_")
        and not attribute.startswith("__")
        and attribute not in NAMEDTUPLE_METHODS
    )


def private_call_sites(tree: ast.Module) -> list[int]:
    """Lines of ``x._name(...)`` calls on something other than ``self``, ``cls`` or ``super()``."""
    lines = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        receiver = node.func.value
        if not _is_private(node.func.attr):
            continue
        if isinstance(receiver, ast.Name) and receiver.id in {"self", "cls"}:
            continue
        if (
            isinstance(receiver, ast.Call)
            and isinstance(receiver.func, ast.Name)
            and receiver.func.id == "super"
        ):
            continue
        lines.append(node.lineno)
    return lines


def _is_record(node: ast.expr) -> bool:
    """``record``, ``summary`` or ``….record``: what record-key reads are read on."""
    return (isinstance(node, ast.Name) and node.id in RECORD_NAMES) or (
        isinstance(node, ast.Attribute) and node.attr == "record"
    )


def record_key_sites(tree: ast.Module) -> list[int]:
    """Lines of ``record[...]`` and ``record.get(...)`` (and on ``summary``, ``….record``)."""
    lines = []
    for node in ast.walk(tree):
        # reads only: a to_dict() building its JSON with summary[...] = ... writes a dict
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Load)
            and _is_record(node.value)
        ):
            lines.append(node.lineno)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and _is_record(node.func.value)
        ):
            lines.append(node.lineno)
    return lines


def _is_dict_annotation(annotation: ast.expr) -> bool:
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        return _is_dict_annotation(ast.parse(annotation.value, mode="eval").body)
    if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
        sides = [annotation.left, annotation.right]
        plain = [
            side for side in sides if not (isinstance(side, ast.Constant) and side.value is None)
        ]
        return any(_is_dict_annotation(side) for side in plain)
    if isinstance(annotation, ast.Subscript):
        if _named(annotation.value, {"Optional"}):
            return _is_dict_annotation(annotation.slice)
        return _named(annotation.value, DICT_TYPES)
    return _named(annotation, DICT_TYPES)


def dict_record_parameter_sites(tree: ast.Module) -> list[int]:
    """Lines of parameters named ``record``/``summary`` annotated as a dict or a Mapping."""
    return _annotated_parameter_sites(tree, RECORD_NAMES, _is_dict_annotation)


def _is_error_text(node: ast.expr) -> bool:
    """An error message: ``error``, ``message``, ``….error``, ``x["error"]``, ``x.get("error")``."""
    if (isinstance(node, ast.Name) and node.id in ERROR_NAMES) or (
        isinstance(node, ast.Attribute) and node.attr == "error"
    ):
        return True
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value == "error"
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
    ):
        first = node.args[0] if node.args else None
        return isinstance(first, ast.Constant) and first.value == "error"
    if isinstance(node, ast.Call) and _named(node.func, {"str"}) and node.args:
        return _is_error_text(node.args[0])  # str(record.get("error") or "")
    if isinstance(node, ast.BoolOp):
        return any(_is_error_text(value) for value in node.values)
    return False


def _phrase_tests(node: ast.AST) -> Iterator[int]:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        method = node.func.attr
        if method in REGEX_METHODS and any(_is_error_text(arg) for arg in node.args):
            yield node.lineno  # PATTERN.search(error), re.search(pattern, error)
        elif method in {"startswith", "endswith"} and _is_error_text(node.func.value):
            yield node.lineno
    elif isinstance(node, ast.Compare):
        for op, right in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, (ast.In, ast.NotIn)) and _is_error_text(right):
                yield node.lineno


def is_failure_module(name: str) -> bool:
    """Where failures are classified: ``failures.py`` modules and the record's module."""
    return name.endswith("/failures.py") or name == "sweeper/record.py"


def failure_phrase_sites(tree: ast.Module) -> list[int]:
    """Lines that test an error message's text, outside a function named ``…legacy…``."""
    lines: list[int] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and "legacy" in node.name:
            return
        lines.extend(_phrase_tests(node))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return lines


def _span(node: ast.stmt) -> int:
    return (node.end_lineno or node.lineno) - node.lineno + 1


def long_function_sites(tree: ast.Module, limit: int) -> list[int]:
    """Lines of the ``def`` of each function (or method) longer than ``limit`` lines."""
    return [node.lineno for node in _functions(tree) if _span(node) > limit]


def long_class_sites(tree: ast.Module, limit: int = LONG_CLASS) -> list[int]:
    """Lines of the ``class`` of each class longer than ``limit`` lines."""
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and _span(node) > limit
    ]


def module_lines(path: Path) -> int:
    """How many lines a module has, comments and blank lines included (as ``wc -l``)."""
    return len(path.read_text().splitlines())


# --- the figures over sweeper/ --------------------------------------------------------------


@dataclass(frozen=True)
class Finder:
    """A per-file figure: which files it reads and what it finds in each."""

    title: str
    applies: Callable[[str, ast.Module], bool]
    find: Callable[[str, ast.Module], list[int]]

    def sites(self, trees: Iterable[tuple[str, ast.Module]] | None = None) -> Sites:
        """Files where the finder reports sites, with their lines."""
        found = {}
        for name, tree in sources() if trees is None else trees:
            if self.applies(name, tree):
                lines = self.find(name, tree)
                if lines:
                    found[name] = sorted(lines)
        return found


def _module_sizes(name: str, tree: ast.Module) -> list[int]:
    return [1] if module_lines(SWEEPER.parent / name) > LONG_MODULE else []


FINDERS: dict[str, Finder] = {
    "docker": Finder(
        "Docker named outside `sweeper/runtime/`",
        lambda name, tree: not name.startswith("sweeper/runtime/"),
        lambda name, tree: docker_sites(tree),
    ),
    "store paths": Finder(
        "store paths built outside `sweeper/store/`",
        lambda name, tree: not name.startswith("sweeper/store/"),
        lambda name, tree: store_path_sites(tree),
    ),
    "Any parameters": Finder(
        "store/step/config/task/record parameters typed `Any`",
        lambda name, tree: True,
        lambda name, tree: any_parameter_sites(tree),
    ),
    "store imports of sweeper.execution": Finder(
        "imports of `sweeper.execution` from `sweeper/store/`",
        lambda name, tree: name.startswith("sweeper/store/"),
        execution_import_sites,
    ),
    "runner reaches": Finder(
        "`runner.` reaches in the policies",
        is_policy_module,
        lambda name, tree: runner_reach_sites(tree),
    ),
    "private calls": Finder(
        "private calls on another object",
        lambda name, tree: True,
        lambda name, tree: private_call_sites(tree),
    ),
    "record keys": Finder(
        "`record[...]`/`record.get(...)` outside the record and the store",
        lambda name, tree: not name.startswith(RECORD_OWNERS),
        lambda name, tree: record_key_sites(tree),
    ),
    "dict records": Finder(
        "`record`/`summary` parameters typed dict/Mapping",
        lambda name, tree: True,
        lambda name, tree: dict_record_parameter_sites(tree),
    ),
    "failure phrases": Finder(
        "failure phrases parsed outside a legacy fallback",
        lambda name, tree: is_failure_module(name),
        lambda name, tree: failure_phrase_sites(tree),
    ),
    "functions over 80 lines": Finder(
        f"functions over {LONG_FUNCTION} lines",
        lambda name, tree: True,
        lambda name, tree: long_function_sites(tree, LONG_FUNCTION),
    ),
    "functions over 50 lines": Finder(
        f"functions over {LONGISH_FUNCTION} lines",
        lambda name, tree: True,
        lambda name, tree: long_function_sites(tree, LONGISH_FUNCTION),
    ),
    "classes over 350 lines": Finder(
        f"classes over {LONG_CLASS} lines",
        lambda name, tree: True,
        lambda name, tree: long_class_sites(tree),
    ),
    "modules over 600 lines": Finder(
        f"modules over {LONG_MODULE} lines",
        lambda name, tree: True,
        _module_sizes,
    ),
}


@dataclass(frozen=True)
class Duplicates:
    """What ``duplicates`` says of sweeper/: pairs, those marked boilerplate, and its rows."""

    pairs: int
    boilerplate: int
    rows: list[str]

    @property
    def product(self) -> int:
        """The pairs not marked boilerplate."""
        return self.pairs - self.boilerplate


DUPLICATES_PAIRS = re.compile(r"^(?P<pairs>\d+) pairs? of places")
DUPLICATES_BOILERPLATE = re.compile(r"(?P<boilerplate>\d+) of those marked boilerplate")


def duplicates() -> Duplicates | None:
    """Run ``duplicates`` over sweeper/ (None where it is not installed or did not finish)."""
    command = shutil.which("duplicates")
    if command is None:
        return None
    result = subprocess.run(
        [command, "--repo", str(SWEEPER), "--most", "200", "--seconds", "60"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    lines = result.stdout.splitlines()
    if not lines or any(line.startswith("incomplete:") for line in lines):
        return None
    if lines[0].startswith("no duplicates"):
        return Duplicates(0, 0, [])
    pairs = DUPLICATES_PAIRS.match(lines[0])
    if pairs is None:
        return None
    boilerplate = DUPLICATES_BOILERPLATE.search(lines[0])
    rows = [line for line in lines[1:] if re.match(r"D\d+ ", line)]
    return Duplicates(
        int(pairs["pairs"]), int(boilerplate["boilerplate"]) if boilerplate else 0, rows
    )
