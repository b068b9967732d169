"""Lists of named things (steps, parameters, nodes...): one per name, and lookups by name.

Like valohai-yaml's ``check_type_and_dictify(..., "name")``, written once for every list a
valohai.yaml holds. What a repeated name means differs by list (Valohai keeps the last
step but the first task variant; a repeated pipeline node is an error), so the caller says
which one is kept and reports the repetition in its own words:

>>> from collections import namedtuple
>>> Item = namedtuple("Item", "name line")
>>> repeats = []
>>> unique_by_name([Item("a", 1), Item("b", 2), Item("a", 3)], lambda item, first: repeats.append((item.line, first.line)))
(Item(name='a', line=3), Item(name='b', line=2))
>>> repeats
[(3, 1)]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal, Protocol, TypeVar

from sweeper.config.problems import Problems, listed, quoted
from sweeper.errors import ConfigError


class Named(Protocol):
    """An item of a valohai.yaml list: its name and the line it was written on."""

    @property
    def name(self) -> str: ...

    @property
    def line(self) -> int | None: ...


N = TypeVar("N", bound=Named)

#: Called with a repeated item and the item of that name kept so far, to report the repetition.
Repeated = Callable[[N, N], None]


def add_by_name(
    found: dict[str, N], item: N, repeated: Repeated[N], *, keep: Literal["first", "last"]
) -> None:
    """Add ``item`` to ``found`` by its name; a repeated name is reported (with the item of
    that name kept so far), then the first or the last item is kept (the last one in the
    first one's place)."""
    first = found.get(item.name)
    if first is not None:
        repeated(item, first)
        if keep == "first":
            return
    found[item.name] = item


def unique_by_name(
    items: Iterable[N], repeated: Repeated[N], *, keep: Literal["first", "last"] = "last"
) -> tuple[N, ...]:
    """One item per name, in the order names first appear (see :func:`add_by_name`)."""
    found: dict[str, N] = {}
    for item in items:
        add_by_name(found, item, repeated, keep=keep)
    return tuple(found.values())


def last_wins(kind: str, problems: Problems) -> Repeated[Any]:
    """Report a repeated ``kind`` name as valohai-yaml treats it: the last definition wins
    (kept in the first one's place). Valohai accepts the repetition, so it is a warning (it
    is almost always a copy-paste slip)."""

    def report(item: Any, first: Any) -> None:
        problems.warning(
            item.line,
            f"{kind} {quoted(item.name)} is defined more than once (first at line {first.line}); "
            "the last definition is used",
        )

    return report


def get_by_name(items: Iterable[N], name: str, missing: Callable[[str], str]) -> N:
    """The item called ``name``; else :class:`ConfigError` with ``missing(known names)``."""
    items = tuple(items)
    for item in items:
        if item.name == name:
            return item
    raise ConfigError(missing(listed(item.name for item in items)))


__all__ = ["Named", "Repeated", "add_by_name", "get_by_name", "last_wins", "unique_by_name"]
