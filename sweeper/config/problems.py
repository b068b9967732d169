"""Problems found in a valohai.yaml: errors and warnings, each with its file and line."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from sweeper.errors import ConfigError

Level = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One error or warning, located in a file.

    ``str(problem)`` reads like a compiler message, ``valohai.yaml:12: error: ...``; the line is
    left out when it is not known (a missing file, say).
    """

    filename: str
    line: int | None
    column: int | None
    level: Level
    message: str
    #: A warning about something Valohai accepts but sweeper cannot run (e.g. a deployment
    #: node's edge type): ``lint`` shows it as a warning, ``pipeline run`` refuses with it.
    blocks_run: bool = field(default=False, compare=False)

    def __str__(self) -> str:
        where = self.filename if self.line is None else f"{self.filename}:{self.line}"
        return f"{where}: {self.level}: {self.message}"


@dataclass
class Problems:
    """Collects the problems found while reading one file, so that all are reported at once."""

    filename: str
    items: list[Problem] = field(default_factory=list)

    def error(self, line: int | None, message: str, *, column: int | None = None) -> None:
        """Record an error at ``line``."""
        self.items.append(Problem(self.filename, line, column, "error", message))

    def warning(
        self,
        line: int | None,
        message: str,
        *,
        column: int | None = None,
        blocks_run: bool = False,
    ) -> None:
        """Record a warning at ``line`` (``blocks_run``: sweeper refuses to run the item)."""
        self.items.append(Problem(self.filename, line, column, "warning", message, blocks_run))

    def blocking(self) -> Problems:
        """A view of these problems whose errors are recorded as warnings that block a run.

        For rules sweeper needs to run an item but Valohai does not check (a task's rules,
        an action's condition): the file stays valid, the item is refused when run.
        """
        return _Blocking(self.filename, self.items)

    def since(self, mark: int) -> list[Problem]:
        """The problems recorded after ``mark`` (a former ``len(problems.items)``)."""
        return self.items[mark:]

    @property
    def errors(self) -> list[Problem]:
        """The errors, in the order they were found."""
        return [p for p in self.items if p.level == "error"]

    @property
    def warnings(self) -> list[Problem]:
        """The warnings, in the order they were found."""
        return [p for p in self.items if p.level == "warning"]

    def sorted(self) -> list[Problem]:
        """All problems ordered by line (problems without a line first), stable otherwise."""
        return sorted(self.items, key=lambda p: p.line or 0)

    def raise_if_errors(self) -> None:
        """Raise :class:`ConfigError` listing every error, one per line."""
        errors = [p for p in self.sorted() if p.level == "error"]
        if errors:
            raise ConfigError("\n".join(str(p) for p in errors))


class _Blocking(Problems):
    def error(self, line: int | None, message: str, *, column: int | None = None) -> None:
        self.warning(line, message, column=column, blocks_run=True)


def listed(names: Iterable[object]) -> str:
    """Names joined for a "known ..." list: as written, or quoted when one holds a control
    character (so a terminal never receives it raw)."""
    shown = [
        quoted(n) if any(unicodedata.category(c) == "Cc" for c in str(n)) else str(n) for n in names
    ]
    return ", ".join(shown) or "(none)"


def quoted(name: object) -> str:
    """Quote a user-supplied name for a message, escaping control characters."""
    text = name if isinstance(name, str) else str(name)
    if len(text) > 80:
        text = text[:77] + "..."
    return json.dumps(text, ensure_ascii=False)
