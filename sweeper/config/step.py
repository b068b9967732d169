"""Steps: what to run (image, command), with which parameters, inputs and resources.

Command rendering lives here because the step owns its parameters; it reproduces
valohai-yaml's ``Step.build_command`` exactly (see :meth:`Step.build_command`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from shlex import quote
from typing import Any

from sweeper.config.duration import parse_duration
from sweeper.config.environment import EnvironmentVariable
from sweeper.config.expressions import Expression, ExpressionError, parse_expression
from sweeper.config.fields import Fields
from sweeper.config.input import Input
from sweeper.config.loader import YamlList, YamlMap, as_yaml
from sweeper.config.mount import Mount
from sweeper.config.named import get_by_name, last_wins, unique_by_name
from sweeper.config.output import Output
from sweeper.config.parameter import Parameter
from sweeper.config.problems import Problems, listed, quoted
from sweeper.config.resources import Resources
from sweeper.config.valohai_expressions import valohai_refuses
from sweeper.errors import ConfigError, ParameterValueError

_KEYS = (
    "name",
    "image",
    "command",
    "parameters",
    "inputs",
    "outputs",
    "mounts",
    "environment",
    "environment-variables",
    "environment-variable-groups",
    "time-limit",
    "no-output-timeout",
    "resources",
    "source-path",
    "description",
    "icon",
    "category",
    "upload-store",
    "stop-condition",
    "cache-volumes",
    "runtime-config-preset",
    "autorestart",
)
#: What Valohai interpolates in commands: ``{anything}`` on one line, matched lazily.
_INTERPOLATION_RE = re.compile(r"{(.+?)}")


def parse_optional_expression(f: Fields, key: str) -> Expression | None:
    """Parse ``key`` as an :class:`Expression` (a ``stop-condition``, which Valohai checks).

    What Valohai refuses is an error; what it accepts but sweeper cannot evaluate (a function
    call, ``in``) is a warning that blocks a run.
    """
    text = f.string(key)
    if text is None:
        return None
    refused = valohai_refuses(text)
    try:
        expression = parse_expression(text)
    except ExpressionError as exc:
        if refused is not None:  # both refuse it: sweeper's message says where
            f.error(key, f"{key} {quoted(text)} is not a valid expression: {exc}")
        else:
            f.problems.warning(
                f.line_of(key),
                f"{f.prefix}{key} {quoted(text)} is valid for Valohai but sweeper cannot "
                f"evaluate it: {exc}",
                blocks_run=True,
            )
        return None
    if refused is not None:
        f.error(key, f"{key} {quoted(text)} is not a valid expression for Valohai: {refused}")
        return None
    return expression


@dataclass(frozen=True, kw_only=True)
class Step:
    """A step of a valohai.yaml: an image, one or more commands, and what they take.

    ``time_limit`` and ``no_output_timeout`` are in seconds (``None``: not set); the
    ``command`` is a tuple of shell lines (a single string in the YAML becomes one line, and
    ``command_is_list`` remembers the original shape for :meth:`serialize`).
    """

    name: str
    image: str
    command: tuple[str, ...]
    parameters: tuple[Parameter, ...] = ()
    inputs: tuple[Input, ...] = ()
    outputs: tuple[Output, ...] = ()
    mounts: tuple[Mount, ...] = ()
    environment: str | None = None
    environment_variables: tuple[EnvironmentVariable, ...] = ()
    environment_variable_groups: tuple[str, ...] = ()
    time_limit: int | None = None
    no_output_timeout: int | None = None
    resources: Resources = field(default_factory=Resources)
    source_path: str | None = None
    description: str | None = None
    icon: str | None = None
    category: str | None = None
    upload_store: str | None = None
    stop_condition: Expression | None = None
    cache_volumes: tuple[str, ...] = ()
    runtime_config_preset: str | None = None
    autorestart: bool | None = None
    command_is_list: bool = field(default=True, compare=False, repr=False)
    line: int | None = field(default=None, compare=False, repr=False)

    # --- parsing -------------------------------------------------------------------------

    @classmethod
    def parse(cls, data: YamlMap, problems: Problems) -> Step | None:
        """Parse the mapping under a top-level ``step`` key; ``None`` if it cannot be used."""
        f = Fields.named(data, problems, "step", allowed=_KEYS)
        name = f.name()
        image = f.string("image", required=True)
        if image is not None and not image.strip():
            problems.warning(f.line_of("image"), f"{f.prefix}image is empty", blocks_run=True)
        command, command_is_list = _parse_command(f)
        definitions = _parse_definitions(f, problems)
        placement = _parse_placement(f, problems)
        described: dict[str, Any] = {
            "source_path": f.string("source-path"),
            "description": f.string("description"),
            "icon": f.string("icon"),
            "category": f.string("category"),
            "upload_store": f.string("upload-store", max_length=64),
            "stop_condition": parse_optional_expression(f, "stop-condition"),
            "cache_volumes": f.string_list("cache-volumes"),
        }
        if name is None or image is None or command is None:
            return None
        return cls(
            name=name,
            image=image,
            command=command,
            command_is_list=command_is_list,
            line=f.line,
            **definitions,
            **placement,
            **described,
        )

    # --- lookups and values --------------------------------------------------------------

    def get_parameter(self, name: str) -> Parameter:
        """The parameter called ``name``; :class:`ConfigError` naming the known ones otherwise."""
        return get_by_name(
            self.parameters,
            name,
            lambda known: (
                f"step {quoted(self.name)} has no parameter {quoted(name)}; "
                f"known parameters: {known}"
            ),
        )

    def get_input(self, name: str) -> Input:
        """The input called ``name``; :class:`ConfigError` naming the known ones otherwise."""
        return get_by_name(
            self.inputs,
            name,
            lambda known: (
                f"step {quoted(self.name)} has no input {quoted(name)}; known inputs: {known}"
            ),
        )

    def default_parameter_values(self) -> dict[str, Any]:
        """Every parameter's default, leaving out parameters without one -- and flags.

        As in valohai-yaml, a flag's default is not a value: "an undefined flag will remain
        undefined regardless of default value", so a flag is passed only when it is set.
        """
        return {
            p.name: list(p.default) if isinstance(p.default, tuple) else p.default
            for p in self.parameters
            if p.default is not None and p.type != "flag"
        }

    def parse_parameter_values(self, raw: Mapping[str, Sequence[str]]) -> dict[str, Any]:
        """Parse text values (e.g. from ``-p name=value``, repeated for multiple) into typed values.

        Each is parsed by the parameter's type and checked against its min, max and choices;
        unknown names are errors. All problems are reported in one :class:`ParameterValueError`.
        """
        by_name = {p.name: p for p in self.parameters}
        values: dict[str, Any] = {}
        messages: list[str] = []
        for name, texts in raw.items():
            parameter = by_name.get(name)
            if parameter is None:
                known = listed(by_name)
                messages.append(
                    f"unknown parameter {quoted(name)} for step {quoted(self.name)}; known parameters: {known}"
                )
                continue
            try:
                values[name] = parameter.parse_values(texts)
            except ParameterValueError as exc:
                messages.append(str(exc))
        if messages:
            raise ParameterValueError("; ".join(messages))
        return values

    def build_command(self, values: Mapping[str, Any] | None = None) -> list[str]:
        """Render the command lines with ``values`` overlaid on the parameter defaults.

        This is Valohai's rendering (valohai-yaml ``Step.build_command``):

        * defaults are used for parameters not in ``values`` -- except flags, whose default
          is ignored: a flag appears only when ``values`` sets it;
        * a value of ``None`` leaves its parameter out (a flag's ``pass-false-as`` included);
        * ``{parameters}`` and ``{params}`` become every parameter in declaration order,
          ``{parameter:NAME}`` one parameter, ``{parameter-value:NAME}`` its bare value and
          ``{source-path}`` the step's ``source-path``, each argument shell-quoted;
        * any other ``{...}`` (and ``${VAR}``) is left as written;
        * each line is stripped, and one line per command is returned.
        """
        merged: dict[str, Any] = self.default_parameter_values()
        merged.update(values or {})
        by_name = {p.name: p for p in self.parameters}
        special = {"source-path": self.source_path} if self.source_path is not None else {}

        def arguments(name: str) -> list[str]:
            value = merged.get(name)
            return [] if value is None else by_name[name].format_cli(value) or []

        def replace(match: re.Match[str]) -> str:
            key = match.group(1)
            if key in special:
                return quote(special[key])
            if key in ("parameters", "params"):
                return " ".join(quote(arg) for p in self.parameters for arg in arguments(p.name))
            if key.startswith("parameter:"):
                name = key.split(":", 1)[1]
                if name in by_name:
                    return " ".join(quote(arg) for arg in arguments(name))
            if key.startswith("parameter-value:"):
                name = key.split(":", 1)[1]
                if name in merged:
                    return quote(str(merged[name]))
            return match.group(0)

        return [_INTERPOLATION_RE.sub(replace, line).strip() for line in self.command]

    # --- node overrides ------------------------------------------------------------------

    def with_override(
        self,
        override: Mapping[str, Any],
        *,
        problems: Problems | None = None,
        line: int | None = None,
        prefix: str = "",
    ) -> Step:
        """This step as a pipeline node's ``override`` changes it.

        ``image``, ``command``, ``environment``, ``runtime-config-preset``, ``autorestart``
        and ``mounts`` replace the step's; ``parameters``, ``inputs`` and
        ``environment-variables`` are merged by name into the step's definitions (an item's
        keys replace the step item's keys, so ``{name: lr, default: [1, 2]}`` changes only
        the default of a ``multiple: repeat`` parameter, which stays multiple). A name the
        step lacks is an error, as in valohai-yaml.

        Problems are recorded in ``problems`` at ``line`` (the node's), each message
        starting with ``prefix``; without ``problems``, the errors raise :class:`ConfigError`.
        """
        if not override:
            return self
        found = Problems(problems.filename if problems else "valohai.yaml")
        where = line if line is not None else self.line or 1
        changes = {
            **self._merged_definitions(override, found, where),
            **_replaced_fields(override, found, where),
        }
        if problems is None:
            if found.errors:
                raise ConfigError("\n".join(f"{prefix}{p.message}" for p in found.errors))
        else:
            for problem in found.items:
                message = f"{prefix}{problem.message}"
                if problem.level == "error":
                    problems.error(problem.line, message)
                else:
                    problems.warning(problem.line, message)
        return dataclasses.replace(self, **changes)

    def _merged_definitions(
        self, override: Mapping[str, Any], found: Problems, where: int
    ) -> dict[str, Any]:
        """The override's parameters, inputs and environment variables merged by name into
        the step's (a name the step lacks is an error, as in valohai-yaml)."""
        changes: dict[str, Any] = {}
        for key, kind, parse in (
            ("parameters", "parameter", Parameter.parse),
            ("inputs", "input", Input.parse),
            ("environment-variables", "environment variable", EnvironmentVariable.parse),
        ):
            items = override.get(key)
            if not items or not isinstance(items, list):
                continue  # a wrong type was reported when the node was read
            attribute = key.replace("-", "_")
            merged = {item.name: item for item in getattr(self, attribute)}
            for data in items:
                name = data.get("name") if isinstance(data, Mapping) else None
                if not isinstance(name, str):
                    found.error(where, f"override: each of {key} must be a mapping with a name")
                    continue
                if name not in merged:
                    known = listed(merged)
                    found.error(
                        where,
                        f"override: {kind} {quoted(name)} does not exist in step {quoted(self.name)}; "
                        f"known: {known}",
                    )
                    continue
                definition = {**merged[name].serialize(), **data}
                item = parse(as_yaml(definition, where), found)
                if item is not None:
                    merged[name] = item
            changes[attribute] = tuple(merged.values())
        return changes

    # --- serialization -------------------------------------------------------------------

    def serialize(self) -> dict[str, Any]:
        """This step as valohai.yaml data, keys in Valohai's order, defaults left out."""
        data: dict[str, Any] = {
            "name": self.name,
            "image": self.image,
            "command": list(self.command) if self.command_is_list else self.command[0],
        }
        optional: list[tuple[str, Any]] = [
            ("parameters", [p.serialize() for p in self.parameters]),
            ("inputs", [i.serialize() for i in self.inputs]),
            ("mounts", [m.serialize() for m in self.mounts]),
            ("cache-volumes", list(self.cache_volumes)),
            ("outputs", [o.serialize() for o in self.outputs]),
            ("environment", self.environment),
            ("autorestart", self.autorestart),
            ("runtime-config-preset", self.runtime_config_preset),
            ("environment-variables", [e.serialize() for e in self.environment_variables]),
            ("environment-variable-groups", list(self.environment_variable_groups)),
            ("description", self.description),
            ("time-limit", self.time_limit),
            ("no-output-timeout", self.no_output_timeout),
            ("icon", self.icon),
            ("category", self.category),
            ("source-path", self.source_path),
            ("resources", self.resources.serialize()),
            ("stop-condition", self.stop_condition.text if self.stop_condition else None),
            ("upload-store", self.upload_store),
        ]
        for key, value in optional:
            if value is not None and value != [] and value != {}:
                data[key] = value
        return data


def _parse_definitions(f: Fields, problems: Problems) -> dict[str, Any]:
    """The step's parameters, inputs, outputs, environment variables (one per name) and mounts."""
    named = {
        "parameters": unique_by_name(
            [p for _, item in f.items("parameters") if (p := Parameter.parse(item, problems))],
            last_wins("parameter", problems),
        ),
        "inputs": unique_by_name(
            [i for _, item in f.items("inputs") if (i := Input.parse(item, problems))],
            last_wins("input", problems),
        ),
        "outputs": unique_by_name(
            [o for _, item in f.items("outputs") if (o := Output.parse(item, problems))],
            last_wins("output", problems),
        ),
        "environment_variables": unique_by_name(
            [
                e
                for _, item in f.items("environment-variables")
                if (e := EnvironmentVariable.parse(item, problems))
            ],
            last_wins("environment variable", problems),
        ),
    }
    return {**named, "mounts": _parse_mounts(f, problems)}


def _parse_mounts(f: Fields, problems: Problems) -> tuple[Mount, ...]:
    raw = f.sequence("mounts")
    if raw is None:
        return ()
    mounts = (Mount.parse(item, raw.line_of(index), problems) for index, item in enumerate(raw))
    return tuple(m for m in mounts if m is not None)


def _parse_placement(f: Fields, problems: Problems) -> dict[str, Any]:
    """Where and how long the step runs: limits, resources, environment and its settings."""
    time_limit = _duration(f, "time-limit")
    no_output_timeout = _duration(f, "no-output-timeout")
    raw_resources = f.mapping("resources")
    resources = (
        Resources.parse(raw_resources, problems) if raw_resources is not None else Resources()
    )
    environment = f.string("environment")
    runtime_config_preset = f.string("runtime-config-preset")
    autorestart = f.boolean("autorestart", False) if "autorestart" in f else None
    if runtime_config_preset and not environment:
        f.error("runtime-config-preset", "runtime-config-preset needs an environment as well")
    if autorestart and not environment:
        f.error("autorestart", "autorestart needs a (spot instance) environment as well")
    return {
        "time_limit": time_limit,
        "no_output_timeout": no_output_timeout,
        "resources": resources,
        "environment": environment,
        "runtime_config_preset": runtime_config_preset,
        "autorestart": autorestart,
        "environment_variable_groups": f.string_list("environment-variable-groups"),
    }


def _replaced_fields(override: Mapping[str, Any], found: Problems, where: int) -> dict[str, Any]:
    """The step fields a node's override replaces whole: image, command, environment, its
    settings and the mounts."""
    changes: dict[str, Any] = {}
    for key in ("image", "environment", "runtime-config-preset"):
        if isinstance(override.get(key), str):
            changes[key.replace("-", "_")] = override[key]
    if isinstance(override.get("autorestart"), bool):
        changes["autorestart"] = override["autorestart"]
    command = override.get("command")
    if isinstance(command, str):
        changes["command"], changes["command_is_list"] = (command,), False
    elif isinstance(command, list) and command and all(isinstance(c, str) for c in command):
        changes["command"], changes["command_is_list"] = tuple(command), True
    if isinstance(override.get("mounts"), list):
        mounts = [Mount.parse(as_yaml(m, where), where, found) for m in override["mounts"]]
        changes["mounts"] = tuple(m for m in mounts if m is not None)
    return changes


def _parse_command(f: Fields) -> tuple[tuple[str, ...] | None, bool]:
    if not f.require("command"):
        return None, True
    raw = f.raw("command")
    if isinstance(raw, str):
        return (raw,), False
    if isinstance(raw, YamlList):
        lines = f.string_list("command")
        if len(lines) != len(raw):
            return None, True
        if not lines:
            f.warning("command", "command is an empty list: the step runs nothing")
        return lines, True
    f.error("command", "command must be a string or a list of strings")
    return None, True


def _duration(f: Fields, key: str) -> int | None:
    raw = f.raw(key)
    if raw is None:
        return None
    if isinstance(raw, str) and not raw.strip():
        return None
    try:
        seconds = parse_duration(raw)
    except ValueError as exc:
        f.error(key, f"{key} {exc}")
        return None
    return seconds or None


__all__ = ["Step", "parse_optional_expression"]
