"""Step parameters: their definition, their values, and how they are passed on the command line."""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sweeper.config.fields import SCALAR_TYPES, Fields, is_number, plain
from sweeper.config.loader import YamlList, YamlMap
from sweeper.config.problems import Problems, quoted
from sweeper.errors import ParameterValueError

PARAMETER_TYPES = ("string", "integer", "float", "flag")
MULTIPLE_MODES = ("none", "repeat", "separate")
_KEYS = (
    "name",
    "type",
    "default",
    "optional",
    "min",
    "max",
    "choices",
    "multiple",
    "multiple-separator",
    "pass-as",
    "pass-true-as",
    "pass-false-as",
    "description",
    "category",
    "widget",
)
_TRUE_WORDS = {"true", "1", "yes"}
_FALSE_WORDS = {"false", "0", "no"}
_PLACEHOLDERS = ("name", "value", "v")
_FIELD_BASE_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)")


def _show(value: Any) -> str:
    """A value as it appears in a message: strings quoted, numbers as written."""
    return quoted(value) if isinstance(value, str) else repr(value)


def template_problem(template: str) -> str | None:
    """Why a ``pass-as`` template cannot be rendered, or ``None`` if it can."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"is not a valid template ({exc}); write a literal brace as {{{{ or }}}}"
    for _literal, field_name, _spec, _conversion in parsed:
        if field_name is None:
            continue
        match = _FIELD_BASE_RE.match(field_name)
        if not match or match.group(1) not in _PLACEHOLDERS:
            return f"uses unknown placeholder {{{field_name}}}; use {{name}}, {{value}} or {{v}}"
    return None


@dataclass(frozen=True, kw_only=True)
class Parameter:
    """A parameter of a step: its type, default and rules, and how it is passed to the command.

    ``multiple`` is ``"none"`` (one value), ``"repeat"`` (the ``pass-as`` pattern repeated
    for each value) or ``"separate"`` (all values joined by ``multiple_separator`` into one
    ``pass-as``). Flags are always optional and never multiple; their default ``pass_as`` is
    ``--{name}`` and other types' is ``--{name}={value}``.
    """

    name: str
    type: str = "string"
    default: Any = None
    optional: bool = False
    min: int | float | None = None
    max: int | float | None = None
    choices: tuple[Any, ...] | None = None
    multiple: str = "none"
    multiple_separator: str = ","
    pass_as: str | None = None
    pass_true_as: str | None = None
    pass_false_as: str | None = None
    description: str | None = None
    category: str | None = None
    widget: Any = None
    line: int | None = field(default=None, compare=False, repr=False)

    # --- parsing -------------------------------------------------------------------------

    @classmethod
    def parse(cls, data: YamlMap, problems: Problems) -> Parameter | None:
        """Parse one item of a step's ``parameters``; ``None`` if it has no usable name."""
        f = Fields.named(data, problems, "parameter", allowed=_KEYS)
        name = f.name()
        type_ = f.choice("type", PARAMETER_TYPES, "string")
        optional = f.boolean("optional", False)
        minimum = f.number("min")
        maximum = f.number("max")
        multiple = f.choice("multiple", MULTIPLE_MODES, "none")
        separator = f.string("multiple-separator")
        pass_as = f.string("pass-as")
        pass_true_as = f.string("pass-true-as")
        pass_false_as = f.string("pass-false-as")
        description = f.string("description")
        category = f.string("category")
        choices = _parse_choices(f)
        widget = _parse_widget(f)
        default = _parse_default(f, multiple)

        _check_templates(
            f, {"pass-as": pass_as, "pass-true-as": pass_true_as, "pass-false-as": pass_false_as}
        )
        if minimum is not None and maximum is not None and minimum > maximum:
            f.warning("min", f"min ({minimum}) is greater than max ({maximum}); no value fits")
        _lint_type_specifics(f, type_, multiple, data)
        if name is None:
            return None
        parameter = cls(
            name=name,
            type=type_,
            default=default,
            optional=True if type_ == "flag" else optional,
            min=minimum,
            max=maximum,
            choices=None if type_ == "flag" else choices,
            multiple="none" if type_ == "flag" else multiple,
            multiple_separator=separator if separator else ",",
            pass_as=pass_as,
            pass_true_as=pass_true_as if type_ == "flag" else None,
            pass_false_as=pass_false_as if type_ == "flag" else None,
            description=description,
            category=category,
            widget=widget,
            line=f.line,
        )
        _lint_default(parameter, f)
        return parameter

    # --- values --------------------------------------------------------------------------

    def _fail(self, message: str) -> ParameterValueError:
        error = ParameterValueError(f"parameter {quoted(self.name)}: {message}")
        error.reason = message  # type: ignore[attr-defined]
        return error

    def parse_value(self, text: str) -> Any:
        """Turn one value typed as text (e.g. on the command line) into this parameter's type.

        Integers and floats are parsed, flags accept true/false, yes/no and 1/0 (any case),
        strings stay as they are. The result is checked with :meth:`validate` rules for one atom.
        """
        if not isinstance(text, str):
            raise self._fail(f"{_show(text)} is not text")
        atom = self._parse_atom(text)
        self._check_rules(atom)
        return atom

    def _parse_atom(self, text: str) -> Any:
        stripped = text.strip()
        if self.type == "integer":
            try:
                return int(stripped, 10)
            except ValueError:
                raise self._fail(f"{_show(text)} is not an integer") from None
        if self.type == "float":
            try:
                value = float(stripped)
            except ValueError:
                raise self._fail(f"{_show(text)} is not a number") from None
            if not math.isfinite(value):
                raise self._fail(f"{_show(text)} is not a finite number")
            return value
        if self.type == "flag":
            lowered = stripped.lower()
            if lowered in _TRUE_WORDS:
                return True
            if lowered in _FALSE_WORDS:
                return False
            raise self._fail(f"{_show(text)} is not a flag value (use true/false, yes/no or 1/0)")
        return text

    def _coerce_atom(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._parse_atom(value)
        if self.type == "integer":
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if not isinstance(value, int) or isinstance(value, bool):
                raise self._fail(f"{_show(value)} is not an integer")
            return value
        if self.type == "float":
            if not is_number(value):
                raise self._fail(f"{_show(value)} is not a number")
            if not math.isfinite(value):
                raise self._fail(f"{_show(value)} is not a finite number")
            return float(value)
        if self.type == "flag":
            if isinstance(value, bool):
                return value
            if is_number(value) and value in (0, 1):
                return bool(value)
            raise self._fail(f"{_show(value)} is not a flag value (use true/false, yes/no or 1/0)")
        if isinstance(value, SCALAR_TYPES):
            return str(value)
        raise self._fail(f"{_show(value)} is not a string")

    def _check_rules(self, value: Any) -> None:
        if self.type in ("integer", "float"):
            if self.min is not None and value < self.min:
                raise self._fail(f"{_show(value)} is less than the minimum {self.min}")
            if self.max is not None and value > self.max:
                raise self._fail(f"{_show(value)} is greater than the maximum {self.max}")
        if self.choices is not None and not self._in_choices(value):
            listed = ", ".join(str(c) for c in self.choices)
            raise self._fail(f"{_show(value)} is not one of the choices: {listed}")

    def _in_choices(self, value: Any) -> bool:
        assert self.choices is not None
        for choice in self.choices:
            if isinstance(choice, bool) or isinstance(value, bool):
                if type(choice) is type(value) and choice == value:
                    return True
            elif choice == value or str(choice) == str(value):
                return True
        return False

    def validate(self, value: Any) -> Any:
        """Check a typed value (or a list of them, for multiple parameters); return it normalised.

        Integral floats become ints for integer parameters, numbers become floats for float
        parameters, text is parsed as by :meth:`parse_value`. ``None`` is accepted only for
        optional parameters. Raises :class:`ParameterValueError` naming the rule broken.
        """
        if value is None:
            if self.optional:
                return None
            raise self._fail("a value is required")
        if isinstance(value, (list, tuple)):
            if self.multiple == "none":
                raise self._fail(f"only one value is allowed (got {len(value)})")
            out = []
            for atom in value:
                if isinstance(atom, (list, tuple, dict)) or atom is None:
                    raise self._fail(f"{_show(atom)} is not a single value")
                typed = self._coerce_atom(atom)
                self._check_rules(typed)
                out.append(typed)
            return out
        typed = self._coerce_atom(value)
        self._check_rules(typed)
        return [typed] if self.multiple != "none" else typed

    def parse_values(self, texts: Sequence[str]) -> Any:
        """Parse the text values given for this parameter (several only if it is multiple)."""
        if isinstance(texts, str):
            texts = [texts]
        if self.multiple == "none":
            if len(texts) != 1:
                raise self._fail(f"only one value is allowed (got {len(texts)})")
            return self.parse_value(texts[0])
        return [self.parse_value(text) for text in texts]

    # --- command-line rendering ----------------------------------------------------------

    @property
    def effective_pass_as(self) -> str:
        """The ``pass-as`` template in force: the one written, or Valohai's default for the type."""
        if self.pass_as:
            return self.pass_as
        return "--{name}" if self.type == "flag" else "--{name}={value}"

    def _template_for(self, value: Any) -> str | None:
        if self.type == "flag":
            if isinstance(value, str):
                value = self._parse_atom(value)
            if self.pass_true_as or self.pass_false_as:
                return (self.pass_true_as if value else self.pass_false_as) or None
            if not value:
                return None
        if value is None:
            return None
        return self.effective_pass_as

    def _format(self, bits: list[str], value: Any) -> list[str]:
        env = {"name": self.name, "value": value, "v": value}
        try:
            return [bit.format_map(env) for bit in bits]
        except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
            raise self._fail(
                f"cannot render pass-as {quoted(' '.join(bits))} with {_show(value)}: {exc}"
            ) from None

    def format_cli(self, value: Any) -> list[str] | None:
        """The command-line arguments for ``value``, not yet shell-quoted; ``None`` if omitted.

        This is Valohai's rendering: the template is split on whitespace into separate
        arguments, then ``{name}``, ``{value}`` and ``{v}`` are filled in with Python's
        ``str.format`` (so a float renders as ``str(float)``, e.g. ``0.001`` or ``1e-05``).
        """
        template = self._template_for(value)
        if not template:
            return None
        bits = template.split()
        if self.multiple == "repeat":
            out: list[str] = []
            for atom in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(atom, (list, tuple)):
                    raise self._fail(f"nested list {atom!r} is not allowed")
                out.extend(self._format(bits, atom))
            return out
        if self.multiple == "separate":
            atoms = list(value) if isinstance(value, (list, tuple)) else [value]
            if not atoms:
                return None
            return self._format(bits, self.multiple_separator.join(str(atom) for atom in atoms))
        if isinstance(value, (list, tuple)):
            raise self._fail(f"list value {list(value)!r} given, but the parameter is not multiple")
        return self._format(bits, value)

    # --- serialization -------------------------------------------------------------------

    def serialize(self) -> dict[str, Any]:
        """This parameter as valohai.yaml data (defaults left out)."""
        data: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.default is not None:
            data["default"] = (
                list(self.default) if isinstance(self.default, tuple) else self.default
            )
        if self.optional and self.type != "flag":
            data["optional"] = True
        if self.min is not None:
            data["min"] = self.min
        if self.max is not None:
            data["max"] = self.max
        if self.choices is not None:
            data["choices"] = list(self.choices)
        if self.multiple != "none":
            data["multiple"] = self.multiple
            if self.multiple_separator != ",":
                data["multiple-separator"] = self.multiple_separator
        for key, value in (
            ("pass-as", self.pass_as),
            ("pass-true-as", self.pass_true_as),
            ("pass-false-as", self.pass_false_as),
            ("description", self.description),
            ("category", self.category),
            ("widget", self.widget),
        ):
            if value is not None:
                data[key] = value
        return data


def _parse_choices(f: Fields) -> tuple[Any, ...] | None:
    raw = f.sequence("choices")
    if raw is None:
        return None
    out: list[Any] = []
    for index, item in enumerate(raw):
        if item is None or not isinstance(item, SCALAR_TYPES):
            # Valohai takes any choices; sweeper cannot offer this one.
            f.problems.blocking().error(
                raw.line_of(index), f"{f.prefix}choices: item {index + 1} must be a plain value"
            )
            continue
        out.append(item)
    return tuple(out) if out else None


def _parse_widget(f: Fields) -> Any:
    raw = f.raw("widget")
    if raw is None:
        return None
    if isinstance(raw, str):
        return raw
    if isinstance(raw, YamlMap):
        if not isinstance(raw.get("type"), str):
            f.error("widget", 'widget must have a string "type"')
        if "settings" in raw and not isinstance(raw["settings"], (YamlMap, type(None))):
            f.error("widget", "widget settings must be a mapping")
        return plain(raw)
    f.error("widget", "widget must be a string or a mapping")
    return None


def _parse_default(f: Fields, multiple: str) -> Any:
    raw = f.raw("default")
    if raw is None:
        return None
    atoms = list(raw) if isinstance(raw, YamlList) else [raw]
    # Valohai reads any default; one sweeper cannot use as a value blocks a run.
    blocking = f.problems.blocking()
    for atom in atoms:
        if atom is not None and not isinstance(atom, SCALAR_TYPES):
            blocking.error(
                f.line_of("default"),
                f"{f.prefix}default must be a plain value"
                + (" or a list of them" if multiple != "none" else ""),
            )
            return plain(raw)
    if isinstance(raw, YamlList):
        if multiple == "none":
            blocking.error(
                f.line_of("default"),
                f"{f.prefix}default is a list, but the parameter is not multiple",
            )
        return tuple(raw)
    return (raw,) if multiple != "none" else raw


def _lint_type_specifics(f: Fields, type_: str, multiple: str, data: YamlMap) -> None:
    if type_ == "flag":
        if data.get("optional") is not None:
            f.warning("optional", "optional has no effect on flag parameters")
        if data.get("multiple") not in (None, "none"):
            f.error("multiple", "flag parameters cannot be multiple")
        if data.get("choices") is not None:
            f.warning("choices", "choices have no effect on flag parameters")
        if data.get("pass-as") and (data.get("pass-true-as") or data.get("pass-false-as")):
            f.warning("pass-as", "pass-as has no effect when pass-true-as or pass-false-as is set")
    else:
        for key in ("pass-true-as", "pass-false-as"):
            if data.get(key) is not None:
                f.warning(key, f"{key} has no effect on {type_} parameters")
    if type_ in ("string", "flag"):
        for key in ("min", "max"):
            if data.get(key) is not None:
                f.warning(key, f"{key} has no effect on {type_} parameters")
    if multiple == "none" and data.get("multiple-separator") is not None:
        f.warning("multiple-separator", "multiple-separator has no effect unless multiple is set")


def _lint_default(parameter: Parameter, f: Fields) -> None:
    """Warn (as Valohai does) about defaults that break the parameter's own rules."""
    if parameter.default is None:
        return
    default = parameter.default
    for atom in default if isinstance(default, tuple) else (default,):
        if parameter.type == "string" and not isinstance(atom, str):
            f.warning("default", f"default {_show(atom)} is not a string")
            continue
        try:
            parameter.validate(atom if parameter.multiple == "none" else [atom])
        except ParameterValueError as exc:
            f.warning("default", f"default {getattr(exc, 'reason', exc)}")


def _check_templates(f: Fields, templates: Mapping[str, str | None]) -> None:
    """Report the ``pass-as`` templates (by key) that cannot be rendered."""
    for key, template in templates.items():
        reason = template_problem(template) if template else None
        if reason:
            f.error(key, f"{key} {quoted(template)} {reason}")


__all__ = ["MULTIPLE_MODES", "PARAMETER_TYPES", "Parameter", "template_problem"]
