"""Outputs a step declares (documentation for users and pipeline edges; any file may be output)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sweeper.config.fields import Fields
from sweeper.config.loader import YamlMap
from sweeper.config.problems import Problems

_KEYS = ("name", "description")


@dataclass(frozen=True, kw_only=True)
class Output:
    """A named output of a step, with an optional description."""

    name: str
    description: str | None = None
    line: int | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, data: YamlMap, problems: Problems) -> Output | None:
        """Parse one item of a step's ``outputs``."""
        f = Fields.named(data, problems, "output", allowed=_KEYS)
        name = f.name()
        description = f.string("description")
        if name is None:
            return None
        return cls(name=name, description=description, line=f.line)

    def serialize(self) -> dict[str, Any]:
        """This output as valohai.yaml data."""
        data: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            data["description"] = self.description
        return data


__all__ = ["Output"]
