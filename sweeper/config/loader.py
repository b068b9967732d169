"""Read YAML text into plain Python values that remember their line numbers.

The node tree is composed with ``yaml.SafeLoader`` (never ``yaml.load``) and converted by hand,
so that every mapping and list knows where it, its keys and its items were written. The
conversion counts nodes, which stops alias bombs ("billion laughs") before they expand, and
refuses input that is too large or nested too deeply instead of hanging or crashing.
"""

from __future__ import annotations

from typing import Any

import yaml

from sweeper.config.problems import Problems, quoted

#: Larger files are refused; real valohai.yaml files are a few kilobytes.
MAX_BYTES = 5_000_000
#: The most values (after alias expansion) one document may hold.
MAX_NODES = 200_000
#: The deepest nesting of mappings and lists accepted.
MAX_DEPTH = 64

_MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlMap(dict):  # type: ignore[type-arg]
    """A mapping read from YAML, with the line of the mapping and of each key and value."""

    line: int
    column: int
    key_lines: dict[str, int]
    value_lines: dict[str, int]

    def line_of(self, key: str) -> int:
        """The line where ``key`` was written, or the mapping's own line."""
        return self.key_lines.get(key, self.line)

    def value_line(self, key: str) -> int:
        """The line where the value of ``key`` starts, or the mapping's own line."""
        return self.value_lines.get(key, self.line_of(key))


class YamlList(list):  # type: ignore[type-arg]
    """A list read from YAML, with the line of the list and of each item."""

    line: int
    column: int
    item_lines: list[int]

    def line_of(self, index: int) -> int:
        """The line where item ``index`` was written, or the list's own line."""
        if 0 <= index < len(self.item_lines):
            return self.item_lines[index]
        return self.line


class _TooLarge(Exception):
    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


def as_yaml(value: Any, line: int) -> Any:
    """Plain data as :class:`YamlMap`/:class:`YamlList`, every part placed at ``line``.

    Lets a ``parse()`` read data that was built rather than read (a node ``override`` merged
    into its step's definition), reporting problems at the line that caused them.
    """
    if isinstance(value, dict):
        mapping = YamlMap({str(k): as_yaml(v, line) for k, v in value.items()})
        mapping.line, mapping.column = line, 1
        mapping.key_lines = dict.fromkeys(mapping, line)
        mapping.value_lines = dict.fromkeys(mapping, line)
        return mapping
    if isinstance(value, (list, tuple)):
        items = YamlList(as_yaml(v, line) for v in value)
        items.line, items.column = line, 1
        items.item_lines = [line] * len(items)
        return items
    return value


def line_of(value: Any, default: int | None = None) -> int | None:
    """The line of a :class:`YamlMap` or :class:`YamlList`, or ``default``."""
    return getattr(value, "line", default)


def load_yaml(text: str, problems: Problems) -> Any:
    """Parse ``text`` as one YAML document; record problems and return ``None`` on failure."""
    if len(text) > MAX_BYTES:
        problems.error(
            None, f"file is too large ({len(text)} characters; the limit is {MAX_BYTES})"
        )
        return None
    loader: yaml.SafeLoader | None = None
    try:
        try:
            loader = yaml.SafeLoader(text)
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else None
            column = mark.column + 1 if mark else None
            where = f" (line {line}, column {column})" if mark else ""
            problems.error(line, f"YAML syntax error{where}: {_yaml_reason(exc)}", column=column)
            return None
        except yaml.reader.ReaderError as exc:
            line, column = _position(text, exc.position)
            problems.error(
                line,
                f"YAML syntax error (line {line}, column {column}): "
                f"unacceptable character #x{exc.character if isinstance(exc.character, int) else 0:04x}",
                column=column,
            )
            return None
        except yaml.YAMLError as exc:
            problems.error(None, f"YAML syntax error: {exc}")
            return None
        except RecursionError:
            problems.error(None, "YAML is nested too deeply")
            return None
        if node is None:
            return None
        converter = _Converter(loader, problems)
        try:
            return converter.convert(node, 0)
        except _TooLarge as exc:
            problems.error(exc.line, str(exc))
            return None
    finally:
        if loader is not None:
            loader.dispose()


def _yaml_reason(exc: yaml.MarkedYAMLError) -> str:
    parts = [p for p in (exc.context, exc.problem) if p]
    return "; ".join(parts) if parts else "invalid YAML"


def _position(text: str, index: int) -> tuple[int, int]:
    before = text[:index]
    line = before.count("\n") + 1
    column = index - (before.rfind("\n") + 1) + 1
    return line, column


class _Converter:
    def __init__(self, loader: yaml.SafeLoader, problems: Problems) -> None:
        self.loader = loader
        self.problems = problems
        self.count = 0

    def convert(self, node: yaml.Node, depth: int) -> Any:
        line = node.start_mark.line + 1
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooLarge(
                f"YAML expands to more than {MAX_NODES} values (are aliases nested too deeply?)",
                line,
            )
        if depth > MAX_DEPTH:
            raise _TooLarge(f"YAML is nested more than {MAX_DEPTH} levels deep", line)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, depth)
        if isinstance(node, yaml.SequenceNode):
            result = YamlList()
            result.line = line
            result.column = node.start_mark.column + 1
            result.item_lines = []
            for item in node.value:
                result.append(self.convert(item, depth + 1))
                result.item_lines.append(item.start_mark.line + 1)
            return result
        try:
            return self.loader.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError) as exc:
            reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            self.problems.error(line, f"invalid value {quoted(node.value)}: {reason}")
            return None

    def _pairs(self, node: yaml.MappingNode, depth: int, seen: set[int]) -> list[tuple[Any, Any]]:
        """Key/value node pairs of a mapping with ``<<`` merge keys resolved (explicit keys win)."""
        explicit: list[tuple[Any, Any]] = []
        merged: list[tuple[Any, Any]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                sources = (
                    value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                )
                for source in sources:
                    if not isinstance(source, yaml.MappingNode):
                        self.problems.error(
                            source.start_mark.line + 1, "a merge key (<<) must refer to a mapping"
                        )
                        continue
                    if id(source) in seen:
                        raise _TooLarge("recursive merge key (<<)", source.start_mark.line + 1)
                    merged.extend(self._pairs(source, depth + 1, seen | {id(source)}))
            else:
                explicit.append((key_node, value_node))
        return merged + explicit

    def _mapping(self, node: yaml.MappingNode, depth: int) -> YamlMap:
        result = YamlMap()
        result.line = node.start_mark.line + 1
        result.column = node.start_mark.column + 1
        result.key_lines = {}
        result.value_lines = {}
        explicit_lines: dict[str, int] = {}
        merged_keys = {id(k) for k, _ in node.value if k.tag != _MERGE_TAG}
        for key_node, value_node in self._pairs(node, depth, {id(node)}):
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.error(
                    key_line, "a mapping key must be a plain value, not a list or mapping"
                )
                continue
            key = self.convert(key_node, depth + 1)
            if not isinstance(key, str):
                key = str(key).lower() if isinstance(key, bool) else str(key)
            if key in explicit_lines and id(key_node) in merged_keys:
                self.problems.warning(
                    key_line,
                    f'duplicate key "{key}" (first at line {explicit_lines[key]}); the last one wins',
                )
            if id(key_node) in merged_keys:
                explicit_lines.setdefault(key, key_line)
            result[key] = self.convert(value_node, depth + 1)
            result.key_lines[key] = key_line
            result.value_lines[key] = value_node.start_mark.line + 1
        return result
