"""Which expressions Valohai itself accepts in a ``stop-condition``.

Valohai checks a step's or task's ``stop-condition`` when it reads the file, with its own
evaluator of a restricted subset of Python. sweeper evaluates conditions with its own parser
(:mod:`sweeper.config.expressions`), whose language differs at the edges; this module tells
``sweep lint`` what Valohai refuses, so that sweeper refuses the same files (an expression
Valohai accepts but sweeper cannot evaluate is a warning instead).

The rules, as observed from Valohai's parser: one Python expression; Python keywords other
than ``and or not in is True False None`` may be used as names (``metadata.class``); names
and dotted names, numbers, strings, ``None``, tuples and sets; calls of a plain name without
keyword arguments; ``not``, unary ``+``/``-``; ``and``/``or``; ``+ - * / //``; and a single
comparison (``==  !=  <  <=  >  >=  in  not in  is  is not``) -- ``a < b < c`` is refused.
Nesting is limited.
"""

from __future__ import annotations

import ast
import io
import keyword
import tokenize

#: Keywords Valohai keeps as operators; any other keyword is read as a plain name.
_OPERATOR_WORDS = frozenset({"and", "or", "not", "in", "is", "True", "False", "None"})
#: How deep the tree may go (Valohai's limit when it checks a file).
MAX_DEPTH = 8
_BINARY = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv)
_CONSTANTS = (str, int, float, type(None))


class _Refused(Exception):
    pass


def _keywords_as_names(text: str) -> str:
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return text  # the parse below reports it
    renamed = [
        token._replace(string=f"_{token.string}")
        if token.type == tokenize.NAME
        and keyword.iskeyword(token.string)
        and token.string not in _OPERATOR_WORDS
        else token
        for token in tokens
    ]
    return tokenize.untokenize(renamed)


def _check(node: ast.AST, depth: int) -> None:
    if depth >= MAX_DEPTH:
        raise _Refused("the expression is nested too deeply")
    inner = depth + 1
    if isinstance(node, ast.Expression):
        _check(node.body, inner)
    elif isinstance(node, ast.Compare):
        if len(node.ops) != 1:
            raise _Refused("only simple comparisons are supported (write a < b and b < c)")
        _check(node.left, inner)
        _check(node.comparators[0], inner)
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            raise _Refused("only functions called by a plain name are supported")
        if node.keywords:
            raise _Refused("keyword arguments are not supported")
        for argument in node.args:
            _check(argument, inner)
    elif isinstance(node, ast.Constant):
        if not isinstance(node.value, _CONSTANTS):
            raise _Refused(f"the constant {node.value!r} is not supported")
    elif isinstance(node, ast.Name):
        pass
    elif isinstance(node, ast.Attribute):
        _check_dotted(node)
    elif isinstance(node, ast.BinOp):
        if not isinstance(node.op, _BINARY):
            raise _Refused(f"the operator {type(node.op).__name__} is not supported")
        _check(node.left, inner)
        _check(node.right, inner)
    elif isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value, inner)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.Not, ast.UAdd, ast.USub)):
            raise _Refused(f"the operator {type(node.op).__name__} is not supported")
        _check(node.operand, inner)
    elif isinstance(node, (ast.Tuple, ast.Set)):
        for element in node.elts:
            _check(element, inner)
    else:
        raise _Refused(f"{type(node).__name__} is not supported")


def _check_dotted(node: ast.AST) -> None:
    while isinstance(node, ast.Attribute):
        node = node.value
    if not isinstance(node, ast.Name):
        raise _Refused("only dotted names are supported")


def valohai_refuses(text: str) -> str | None:
    """Why Valohai refuses ``text`` as a stop condition, or ``None`` if it accepts it."""
    try:
        tree = ast.parse(_keywords_as_names(text), "<expression>", "eval")
    except SyntaxError as exc:
        return str(exc.msg)
    except (ValueError, RecursionError, MemoryError):
        return "invalid syntax"
    try:
        _check(tree, 0)
    except _Refused as exc:
        return str(exc)
    except RecursionError:
        return "the expression is nested too deeply"
    return None


__all__ = ["MAX_DEPTH", "valohai_refuses"]
