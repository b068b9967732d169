"""Pipeline edges: what flows from one node to another."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sweeper.config.fields import Fields, has_control_characters, plain
from sweeper.config.loader import YamlList, YamlMap
from sweeper.config.problems import Problems, quoted

EDGE_TYPES = (
    "output",
    "input",
    "parameter",
    "metadata",
    "file",
    "environment-variable",
    "dependency",
    "deployment",
)
#: Which source types each target type takes when sweeper runs the pipeline (Valohai's
#: parser accepts any pair; the others are reported as warnings that block a run).
EDGE_RULES: dict[str, tuple[str, ...]] = {
    "input": ("output", "file", "input"),
    "parameter": ("parameter", "metadata"),
    "environment-variable": ("parameter", "metadata", "environment-variable"),
}


def split_socket(text: str) -> tuple[str, str, str] | None:
    """Split ``node.type.key`` (the key may contain dots, e.g. ``model*.pkl``)."""
    parts = text.split(".", 2)
    if len(parts) != 3 or not all(parts):
        return None
    return parts[0], parts[1], parts[2]


def _parse_socket(
    role: str, text: str, line: int, problems: Problems
) -> tuple[str, str, str] | None:
    """An edge's ``source`` or ``target`` as ``(node, type, key)``; ``None`` (reported) if invalid."""
    split = split_socket(text)
    if split is None:
        problems.error(line, f"edge: {role} {quoted(text)} must look like node.type.key")
        return None
    if has_control_characters(text):
        problems.error(line, f"edge: {role} {quoted(text)} contains control characters")
        return None
    if split[1] not in EDGE_TYPES:
        problems.error(
            line,
            f"edge: {role} {quoted(text)} has unknown type {quoted(split[1])}; use one of: {', '.join(EDGE_TYPES)}",
        )
        return None
    return split


@dataclass(frozen=True, kw_only=True)
class Edge:
    """An edge from ``source_node.source_type.source_key`` to ``target_node.target_type.target_key``.

    E.g. ``[train.output.model*, test.input.model]``: files of ``train`` whose names match
    ``model*`` become the ``model`` input of ``test``. Types: output, input, parameter,
    metadata, file, environment-variable, dependency.
    """

    source_node: str
    source_type: str
    source_key: str
    target_node: str
    target_type: str
    target_key: str
    configuration: dict[str, Any] = field(default_factory=dict)
    shorthand: bool = field(default=True, compare=False, repr=False)
    line: int | None = field(default=None, compare=False, repr=False)

    def __hash__(self) -> int:
        return hash((self.source, self.target))

    @property
    def source(self) -> str:
        """The source as written: ``node.type.key``."""
        return f"{self.source_node}.{self.source_type}.{self.source_key}"

    @property
    def target(self) -> str:
        """The target as written: ``node.type.key``."""
        return f"{self.target_node}.{self.target_type}.{self.target_key}"

    def describe(self, *, with_line: bool = True) -> str:
        """The edge as the user wrote it, with its line when known (and wanted)."""
        where = f" (line {self.line})" if self.line and with_line else ""
        return f"edge [{self.source}, {self.target}]{where}"

    @classmethod
    def parse(cls, data: Any, line: int, problems: Problems) -> Edge | None:
        """Parse one item of a pipeline's ``edges``: ``[source, target]`` or a mapping."""
        configuration: dict[str, Any] = {}
        shorthand = isinstance(data, YamlList)
        if shorthand:
            if len(data) != 2 or not all(isinstance(x, str) for x in data):
                problems.error(
                    line, "edge: a shorthand edge must be a list of two strings, [source, target]"
                )
                return None
            source, target = data
        elif isinstance(data, YamlMap):
            f = Fields(
                data, problems, prefix="edge: ", allowed=("source", "target", "configuration")
            )
            source, target = f.string("source", required=True), f.string("target", required=True)
            raw_configuration = f.mapping("configuration")
            configuration = plain(raw_configuration) if raw_configuration is not None else {}
            if source is None or target is None:
                return None
        else:
            problems.error(
                line, "edge must be a list [source, target] or a mapping with source and target"
            )
            return None
        source_socket = _parse_socket("source", source, line, problems)
        if source_socket is None:
            return None
        target_socket = _parse_socket("target", target, line, problems)
        if target_socket is None:
            return None
        (sn, st, sk), (tn, tt, tk) = source_socket, target_socket
        return cls(
            source_node=sn,
            source_type=st,
            source_key=sk,
            target_node=tn,
            target_type=tt,
            target_key=tk,
            configuration=configuration,
            shorthand=shorthand,
            line=line,
        )

    def serialize(self) -> Any:
        """This edge as valohai.yaml data, in the shape it was written."""
        if self.shorthand and not self.configuration:
            return [self.source, self.target]
        data: dict[str, Any] = {"source": self.source, "target": self.target}
        if self.configuration:
            data["configuration"] = self.configuration
        return data


__all__ = ["EDGE_RULES", "EDGE_TYPES", "Edge", "split_socket"]
