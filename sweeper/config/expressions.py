"""Stop conditions and pipeline action conditions: a small, safe expression language.

Valohai evaluates ``stop-condition`` and action ``if`` expressions with a restricted,
Python-like evaluator. This module parses the same shape of expression with a hand-written
recursive-descent parser (nothing is ever passed to ``eval``)::

    metadata.accuracy > 0.95
    loss < 0.1 and not (epoch < 3)
    parameters.optimizer == "adam" or metadata.val_loss <= 0.2 * 2

Names are dotted identifiers: ``metadata.X`` reads metadata key ``X``, ``parameter.X`` and
``parameters.X`` read parameter ``X``, and a bare name reads metadata first, then parameters.
A name that is missing makes any comparison involving it false (never an exception).

>>> parse_expression("metadata.accuracy >= 0.9").evaluate({"accuracy": 0.93}, {})
True
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sweeper.errors import ConfigError

#: Longer expressions are refused.
MAX_LENGTH = 4096
#: Deeper nesting (parentheses, ``not``, unary minus) is refused.
MAX_DEPTH = 48
#: Expressions with more tokens are refused (this also bounds the depth of operator chains).
MAX_TOKENS = 512


class ExpressionError(ConfigError):
    """An expression is malformed; the message says what and where (1-based column)."""

    def __init__(self, message: str, column: int | None = None) -> None:
        super().__init__(message if column is None else f"{message} at column {column}")
        self.reason = message
        self.column = column


class _Missing:
    """The value of a name that is not in metadata or parameters."""

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

_TOKEN_RE = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<op>==|!=|<=|>=|<|>|\(|\)|\+|-|\*|/|%)
    """,
    re.VERBOSE,
)

_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "%": operator.mod,
}
_CONSTANTS = {
    "true": True,
    "True": True,
    "false": False,
    "False": False,
    "None": None,
    "null": None,
}
_KEYWORDS = {"and", "or", "not"}


@dataclass(frozen=True)
class _Token:
    kind: str  # number, string, name, op, keyword, end
    text: str
    column: int
    value: Any = None


def _unescape(body: str) -> str:
    escapes = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}
    out: list[str] = []
    index = 0
    while index < len(body):
        ch = body[index]
        if ch == "\\" and index + 1 < len(body):
            out.append(escapes.get(body[index + 1], body[index + 1]))
            index += 2
        else:
            out.append(ch)
            index += 1
    return "".join(out)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN_RE.match(text, position)
        if match is None:
            raise ExpressionError(f"unexpected character {text[position]!r}", position + 1)
        kind = match.lastgroup or ""
        token_text = match.group()
        column = position + 1
        position = match.end()
        if kind == "space":
            continue
        if kind == "number":
            value: Any = (
                float(token_text) if any(c in token_text for c in ".eE") else int(token_text)
            )
            tokens.append(_Token("number", token_text, column, value))
        elif kind == "string":
            tokens.append(_Token("string", token_text, column, _unescape(token_text[1:-1])))
        elif kind == "name" and token_text in _KEYWORDS:
            tokens.append(_Token("keyword", token_text, column))
        elif kind == "name" and token_text in _CONSTANTS:
            tokens.append(_Token("constant", token_text, column, _CONSTANTS[token_text]))
        else:
            tokens.append(_Token(kind, token_text, column))
        if len(tokens) > MAX_TOKENS:
            raise ExpressionError(f"expression has more than {MAX_TOKENS} tokens")
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


# --- the syntax tree -------------------------------------------------------------------------


class _Node:
    def eval(self, metadata: Mapping[str, Any], parameters: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    def names(self) -> list[str]:
        return []


@dataclass(frozen=True)
class _Literal(_Node):
    value: Any

    def eval(self, metadata: Mapping[str, Any], parameters: Mapping[str, Any]) -> Any:
        return self.value


@dataclass(frozen=True)
class _Name(_Node):
    name: str

    def eval(self, metadata: Mapping[str, Any], parameters: Mapping[str, Any]) -> Any:
        head, _, rest = self.name.partition(".")
        if head == "metadata" and rest:
            return _lookup(metadata, rest)
        if head in ("parameter", "parameters") and rest:
            return _lookup(parameters, rest)
        value = _lookup(metadata, self.name)
        return _lookup(parameters, self.name) if value is MISSING else value

    def names(self) -> list[str]:
        return [self.name]


def _lookup(mapping: Mapping[str, Any], dotted: str) -> Any:
    if dotted in mapping:
        return mapping[dotted]
    current: Any = mapping
    for part in dotted.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return MISSING
        current = current[part]
    return current


@dataclass(frozen=True)
class _Not(_Node):
    operand: _Node

    def eval(self, metadata: Mapping[str, Any], parameters: Mapping[str, Any]) -> Any:
        return not _truth(self.operand.eval(metadata, parameters))

    def names(self) -> list[str]:
        return self.operand.names()


@dataclass(frozen=True)
class _Negate(_Node):
    operand: _Node

    def eval(self, metadata: Mapping[str, Any], parameters: Mapping[str, Any]) -> Any:
        value = self.operand.eval(metadata, parameters)
        if _is_number(value):
            return -value
        return MISSING

    def names(self) -> list[str]:
        return self.operand.names()


@dataclass(frozen=True)
class _BoolOp(_Node):
    op: str  # "and" | "or"
    operands: tuple[_Node, ...]

    def eval(self, metadata: Mapping[str, Any], parameters: Mapping[str, Any]) -> Any:
        if self.op == "and":
            return all(_truth(o.eval(metadata, parameters)) for o in self.operands)
        return any(_truth(o.eval(metadata, parameters)) for o in self.operands)

    def names(self) -> list[str]:
        return [n for o in self.operands for n in o.names()]


@dataclass(frozen=True)
class _Arithmetic(_Node):
    op: str
    left: _Node
    right: _Node

    def eval(self, metadata: Mapping[str, Any], parameters: Mapping[str, Any]) -> Any:
        left = _as_number(self.left.eval(metadata, parameters))
        right = _as_number(self.right.eval(metadata, parameters))
        if left is MISSING or right is MISSING:
            return MISSING
        try:
            result = _ARITHMETIC[self.op](left, right)
        except (ArithmeticError, ValueError):
            return MISSING
        return result

    def names(self) -> list[str]:
        return self.left.names() + self.right.names()


@dataclass(frozen=True)
class _Compare(_Node):
    operands: tuple[_Node, ...]
    ops: tuple[str, ...]

    def eval(self, metadata: Mapping[str, Any], parameters: Mapping[str, Any]) -> Any:
        values = [o.eval(metadata, parameters) for o in self.operands]
        for op, left, right in zip(self.ops, values, values[1:], strict=False):
            if not _compare(op, left, right):
                return False
        return True

    def names(self) -> list[str]:
        return [n for o in self.operands for n in o.names()]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_number(value: Any) -> Any:
    if _is_number(value):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return MISSING
    return MISSING


def _truth(value: Any) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return False
    return bool(value)


def _compare(op: str, left: Any, right: Any) -> bool:
    if left is MISSING or right is MISSING:
        return False
    # Metadata read from text may hold numbers as strings; compare those numerically.
    if _is_number(left) and isinstance(right, str) or _is_number(right) and isinstance(left, str):
        left, right = _as_number(left), _as_number(right)
        if left is MISSING or right is MISSING:
            return op == "!="
    try:
        return bool(_COMPARISONS[op](left, right))
    except TypeError:
        return op == "!="


# --- the parser ------------------------------------------------------------------------------


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.index = 0
        self.depth = 0

    @property
    def current(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def at(self, kind: str, *texts: str) -> bool:
        token = self.current
        return token.kind == kind and (not texts or token.text in texts)

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(
                f"expression is nested more than {MAX_DEPTH} levels deep", self.current.column
            )

    def leave(self) -> None:
        self.depth -= 1

    def parse(self) -> _Node:
        if self.at("end"):
            raise ExpressionError("expression is empty")
        node = self.parse_or()
        if not self.at("end"):
            token = self.current
            raise ExpressionError(f"unexpected {token.text!r}", token.column)
        return node

    def parse_or(self) -> _Node:
        operands = [self.parse_and()]
        while self.at("keyword", "or"):
            self.advance()
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else _BoolOp("or", tuple(operands))

    def parse_and(self) -> _Node:
        operands = [self.parse_not()]
        while self.at("keyword", "and"):
            self.advance()
            operands.append(self.parse_not())
        return operands[0] if len(operands) == 1 else _BoolOp("and", tuple(operands))

    def parse_not(self) -> _Node:
        if self.at("keyword", "not"):
            self.advance()
            self.enter()
            node = _Not(self.parse_not())
            self.leave()
            return node
        return self.parse_comparison()

    def parse_comparison(self) -> _Node:
        operands = [self.parse_sum()]
        ops: list[str] = []
        while self.at("op", *_COMPARISONS):
            ops.append(self.advance().text)
            operands.append(self.parse_sum())
        return operands[0] if not ops else _Compare(tuple(operands), tuple(ops))

    def parse_sum(self) -> _Node:
        node = self.parse_term()
        while self.at("op", "+", "-"):
            op = self.advance().text
            node = _Arithmetic(op, node, self.parse_term())
        return node

    def parse_term(self) -> _Node:
        node = self.parse_unary()
        while self.at("op", "*", "/", "%"):
            op = self.advance().text
            node = _Arithmetic(op, node, self.parse_unary())
        return node

    def parse_unary(self) -> _Node:
        if self.at("op", "-", "+"):
            sign = self.advance().text
            self.enter()
            operand = self.parse_unary()
            self.leave()
            return _Negate(operand) if sign == "-" else operand
        return self.parse_atom()

    def parse_atom(self) -> _Node:
        token = self.current
        if token.kind in ("number", "string", "constant"):
            self.advance()
            return _Literal(token.value)
        if token.kind == "name":
            self.advance()
            return _Name(token.text)
        if token.kind == "op" and token.text == "(":
            self.advance()
            self.enter()
            node = self.parse_or()
            self.leave()
            if not self.at("op", ")"):
                raise ExpressionError("missing closing parenthesis", self.current.column)
            self.advance()
            return node
        if token.kind == "end":
            raise ExpressionError("unexpected end of expression", token.column)
        raise ExpressionError(f"unexpected {token.text!r}", token.column)


@dataclass(frozen=True)
class Expression:
    """A parsed condition such as ``metadata.accuracy > 0.95``; compares equal by its text."""

    text: str
    _root: _Node = field(compare=False, repr=False)

    def evaluate(self, metadata: Mapping[str, Any], parameters: Mapping[str, Any]) -> bool:
        """Evaluate against an execution's metadata and parameters; missing names make comparisons false."""
        return _truth(self._root.eval(metadata, parameters))

    @property
    def names(self) -> tuple[str, ...]:
        """The dotted names the expression reads, in order of appearance (no repeats)."""
        return tuple(dict.fromkeys(self._root.names()))

    def __str__(self) -> str:
        return self.text


def parse_expression(text: str) -> Expression:
    """Parse ``text`` into an :class:`Expression`, raising :class:`ExpressionError` if malformed."""
    if not isinstance(text, str):
        raise ExpressionError("expression must be a string")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression is longer than {MAX_LENGTH} characters")
    root = _Parser(_tokenize(text)).parse()
    return Expression(text, root)


__all__ = ["Expression", "ExpressionError", "MISSING", "parse_expression"]
