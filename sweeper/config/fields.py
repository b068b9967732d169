"""Typed, reported access to the fields of one YAML mapping.

Every ``parse()`` in this package reads its mapping through a :class:`Fields`: wrong types and
unknown keys are recorded as problems (with the line of the key) and a safe fallback is
returned, so that parsing goes on and every problem in the file is found in one pass.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Collection
from typing import Any

from sweeper.config.loader import YamlList, YamlMap, line_of
from sweeper.config.problems import Problems, quoted

#: Python types a YAML scalar may become (dates included: YAML resolves them).
SCALAR_TYPES = (str, int, float, bool)


def is_number(value: object) -> bool:
    """True for ints and floats, but not for booleans (YAML ``true`` is not a number)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def has_control_characters(text: str) -> bool:
    """True if ``text`` contains control characters (newlines and tabs included)."""
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def label_of(data: YamlMap) -> str:
    """How a message names a mapping: its quoted ``name``, or ``(unnamed)``."""
    return quoted(data["name"]) if isinstance(data.get("name"), str) else "(unnamed)"


class Fields:
    """Reads typed values out of a YAML mapping, recording problems as it goes.

    ``prefix`` starts every message (e.g. ``'parameter "lr": '``); ``allowed`` lists the keys
    that may appear, and any other key is reported as an error once, on construction.
    """

    def __init__(
        self,
        data: YamlMap,
        problems: Problems,
        *,
        prefix: str,
        allowed: Collection[str],
        unknown_level: str = "error",
    ) -> None:
        self.data = data
        self.problems = problems
        self.prefix = prefix
        self._nulls: set[str] = set()
        for key in data:
            if key not in allowed:
                hint = difflib.get_close_matches(key, list(allowed), n=1)
                suggestion = f' (did you mean "{hint[0]}"?)' if hint else ""
                message = f"{prefix}unknown key {quoted(key)}{suggestion}"
                if unknown_level == "error":
                    problems.error(data.line_of(key), message)
                else:
                    problems.warning(data.line_of(key), message)

    @classmethod
    def named(
        cls, data: YamlMap, problems: Problems, kind: str, *, allowed: Collection[str]
    ) -> Fields:
        """The fields of a named ``kind`` of item: each message starts ``kind "name": ``."""
        return cls(data, problems, prefix=f"{kind} {label_of(data)}: ", allowed=allowed)

    @property
    def line(self) -> int:
        """The line of the mapping itself."""
        return self.data.line

    def line_of(self, key: str) -> int:
        """The line where ``key`` was written (or the mapping's line if it is absent)."""
        return self.data.line_of(key)

    def __contains__(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def error(self, key: str | None, message: str) -> None:
        """Record an error about ``key`` (or the mapping as a whole)."""
        line = self.line if key is None else self.line_of(key)
        self.problems.error(line, f"{self.prefix}{message}")

    def warning(self, key: str | None, message: str) -> None:
        """Record a warning about ``key`` (or the mapping as a whole)."""
        line = self.line if key is None else self.line_of(key)
        self.problems.warning(line, f"{self.prefix}{message}")

    def raw(self, key: str) -> Any:
        """The value as written, or ``None``."""
        return self.data.get(key)

    def null(self, key: str) -> bool:
        """Whether ``key`` is written with no value (``key:`` or ``key: null``), which
        Valohai's schema refuses for a typed field; records the error."""
        if key in self.data and self.data[key] is None:
            if key not in self._nulls:
                self._nulls.add(key)
                self.error(key, f"{key} has no value (null); give one or leave the key out")
            return True
        return False

    def require(self, key: str) -> bool:
        """Record an error if ``key`` is missing or null; return whether it is present."""
        if key not in self:
            self.error(None, f"missing required key {quoted(key)}")
            return False
        return True

    def string(
        self, key: str, *, required: bool = False, max_length: int | None = None
    ) -> str | None:
        """A string value; numbers are not silently turned into strings."""
        if self.null(key):
            return None
        if required and not self.require(key):
            return None
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            self.error(key, f"{key} must be a string")
            return None
        if max_length is not None and len(value) > max_length:
            self.error(key, f"{key} must be at most {max_length} characters long")
        return value

    def name(self, key: str = "name", *, max_length: int | None = None) -> str | None:
        """A required, non-empty name without control characters."""
        value = self.string(key, required=True, max_length=max_length)
        if value is None:
            return None
        if not value.strip():
            # Valohai accepts it; it is almost certainly a slip.
            self.warning(key, f"{key} is empty")
        if has_control_characters(value):
            # Valohai accepts it, but such a name cannot be typed, printed or stored safely:
            # the file stays valid and sweeper refuses to run the item.
            line = self.line_of(key)
            message = f"{self.prefix}{key} {quoted(value)} contains control characters"
            self.problems.warning(line, message, blocks_run=True)
        return value

    def boolean(self, key: str, default: bool) -> bool:
        """A ``true``/``false`` value."""
        if self.null(key):
            return default
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.error(key, f"{key} must be true or false")
            return default
        return value

    def number(self, key: str) -> int | float | None:
        """An integer or floating-point value."""
        if self.null(key):
            return None
        value = self.data.get(key)
        if value is None:
            return None
        if not is_number(value):
            self.error(key, f"{key} must be a number")
            return None
        return value  # type: ignore[no-any-return]

    def integer(self, key: str, *, minimum: int | None = None) -> int | None:
        """An integer value (``3.0`` is accepted as 3)."""
        if self.null(key):
            return None
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            self.error(key, f"{key} must be an integer")
            return None
        if minimum is not None and value < minimum:
            self.error(key, f"{key} must be at least {minimum}")
            return None
        return value

    def choice(
        self, key: str, choices: Collection[str], default: str, *, normalize: bool = True
    ) -> str:
        """One of ``choices`` (compared case-insensitively unless ``normalize`` is off)."""
        if self.null(key):
            return default
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            self.error(key, f"{key} must be one of: {', '.join(choices)}")
            return default
        text = value.strip().lower() if normalize else value
        if text not in choices:
            self.error(key, f"{key} {quoted(value)} is not one of: {', '.join(choices)}")
            return default
        return text

    def mapping(self, key: str) -> YamlMap | None:
        """A nested mapping."""
        if self.null(key):
            return None
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, YamlMap):
            self.error(key, f"{key} must be a mapping")
            return None
        return value

    def sequence(self, key: str) -> YamlList | None:
        """A nested list."""
        if self.null(key):
            return None
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, YamlList):
            self.error(key, f"{key} must be a list")
            return None
        return value

    def string_list(self, key: str, *, allow_single: bool = False) -> tuple[str, ...]:
        """A list of strings (or, with ``allow_single``, one string)."""
        if self.null(key):
            return ()
        value = self.data.get(key)
        if value is None:
            return ()
        if allow_single and isinstance(value, str):
            return (value,)
        if not isinstance(value, YamlList):
            expected = "a string or a list of strings" if allow_single else "a list of strings"
            self.error(key, f"{key} must be {expected}")
            return ()
        out: list[str] = []
        for index, item in enumerate(value):
            if not isinstance(item, str):
                self.problems.error(
                    value.line_of(index), f"{self.prefix}{key}: item {index + 1} must be a string"
                )
                continue
            out.append(item)
        return tuple(out)

    def items(self, key: str) -> list[tuple[int, YamlMap]]:
        """The mapping items of a list, each with its line; other items are reported."""
        value = self.sequence(key)
        if value is None:
            return []
        out: list[tuple[int, YamlMap]] = []
        for index, item in enumerate(value):
            if not isinstance(item, YamlMap):
                self.problems.error(
                    value.line_of(index), f"{self.prefix}{key}: item {index + 1} must be a mapping"
                )
                continue
            out.append((value.line_of(index), item))
        return out


def plain(value: Any) -> Any:
    """Strip the line bookkeeping: :class:`YamlMap` -> dict, :class:`YamlList` -> list, deeply."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


__all__ = ["Fields", "SCALAR_TYPES", "has_control_characters", "is_number", "line_of", "plain"]
