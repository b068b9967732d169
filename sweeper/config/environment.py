"""Environment variables declared by a step."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sweeper.config.fields import Fields, is_number
from sweeper.config.loader import YamlMap
from sweeper.config.problems import Problems

_KEYS = ("name", "default", "optional", "description", "secret")
_PORTABLE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, kw_only=True)
class EnvironmentVariable:
    """An environment variable of a step, with its default value.

    Valohai makes every variable optional unless ``optional: false``. ``secret`` is a sweeper
    addition (not a Valohai key): a secret's value is masked wherever it is recorded.
    """

    name: str
    default: str | None = None
    optional: bool = True
    description: str | None = None
    secret: bool = False
    line: int | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, data: YamlMap, problems: Problems) -> EnvironmentVariable | None:
        """Parse one item of a step's ``environment-variables``."""
        f = Fields.named(data, problems, "environment variable", allowed=_KEYS)
        name = f.name()
        if name is not None and ("=" in name or " " in name):
            # Valohai accepts the file; no process can be given such a variable.
            problems.warning(
                f.line_of("name"),
                f'{f.prefix}name must not contain "=" or spaces',
                blocks_run=True,
            )
            name = None
        elif name is not None and not _PORTABLE_NAME_RE.match(name):
            f.warning("name", "name is not a portable environment variable name")
        f.null("default")  # Valohai's schema types the default as a string
        raw_default = f.raw("default")
        default: str | None = None
        if is_number(raw_default) or isinstance(raw_default, bool):
            f.error(
                "default",
                f'default must be a string, as Valohai requires (quote it: "{raw_default}")',
            )
        elif raw_default is not None:
            default = f.string("default")
            if default is not None and "\x00" in default:
                f.error("default", "default must not contain NUL characters")
                default = None
        optional = f.boolean("optional", True)
        description = f.string("description")
        secret = f.boolean("secret", False)
        if "secret" in f:
            f.warning(
                "secret", "secret is a sweeper extension: the Valohai platform refuses this key"
            )
        if name is None:
            return None
        return cls(
            name=name,
            default=default,
            optional=optional,
            description=description,
            secret=secret,
            line=f.line,
        )

    def serialize(self) -> dict[str, Any]:
        """This variable as valohai.yaml data (defaults left out)."""
        data: dict[str, Any] = {"name": self.name}
        if self.default is not None:
            data["default"] = self.default
        if not self.optional:
            data["optional"] = False
        if self.description is not None:
            data["description"] = self.description
        if self.secret:
            data["secret"] = True
        return data


__all__ = ["EnvironmentVariable"]
