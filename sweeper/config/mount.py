"""Custom mounts of a step (for private environments that allow them)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sweeper.config.fields import Fields, plain
from sweeper.config.loader import YamlMap
from sweeper.config.problems import Problems, quoted

_KEYS = ("source", "destination", "readonly", "type", "options")
_SHORT_RE = re.compile(r"^(/[^:]+):(/.+)$")


@dataclass(frozen=True, kw_only=True)
class Mount:
    """A mount: ``source`` (host path, or depends on ``type``) at container path ``destination``.

    Written either as ``/host/path:/container/path`` or as a mapping; ``short_form`` remembers
    which, so that serialization gives back the same shape.
    """

    source: str
    destination: str
    readonly: bool = False
    type: str | None = None
    options: dict[str, Any] | None = None
    short_form: bool = field(default=False, compare=False, repr=False)
    line: int | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, data: Any, line: int, problems: Problems) -> Mount | None:
        """Parse one item of a step's ``mounts`` (a string or a mapping)."""
        if isinstance(data, str):
            match = _SHORT_RE.match(data)
            if not match:
                problems.error(
                    line, f"mount {quoted(data)} must look like /source/path:/destination/path"
                )
                return None
            return cls(
                source=match.group(1), destination=match.group(2), short_form=True, line=line
            )
        if not isinstance(data, YamlMap):
            problems.error(line, "mount must be a string or a mapping")
            return None
        f = Fields(data, problems, prefix="mount: ", allowed=_KEYS)
        source = f.string("source", required=True)
        destination = f.string("destination", required=True)
        if destination is not None and not destination.startswith("/"):
            f.error("destination", f"destination {quoted(destination)} must be an absolute path")
            destination = None
        readonly = f.boolean("readonly", False)
        type_ = f.string("type")
        options = f.mapping("options")
        if source is None or destination is None:
            return None
        return cls(
            source=source,
            destination=destination,
            readonly=readonly,
            type=type_,
            options=plain(options) if options is not None else None,
            line=line,
        )

    def serialize(self) -> Any:
        """This mount as valohai.yaml data, in the form it was written."""
        if self.short_form and not self.readonly and self.type is None and self.options is None:
            return f"{self.source}:{self.destination}"
        data: dict[str, Any] = {"source": self.source, "destination": self.destination}
        if self.readonly:
            data["readonly"] = True
        if self.type is not None:
            data["type"] = self.type
        if self.options is not None:
            data["options"] = self.options
        return data


__all__ = ["Mount"]
