"""The stop-condition / action expression language: parsing, evaluation, rejection."""

from __future__ import annotations

import re

import pytest

from sweeper.config import ExpressionError, parse_expression
from sweeper.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "metadata", "parameters", "expected"),
    [
        ("metadata.accuracy > 0.95", {"accuracy": 0.96}, {}, True),
        ("metadata.accuracy > 0.95", {"accuracy": 0.95}, {}, False),
        ("accuracy >= 0.95", {"accuracy": 0.95}, {}, True),
        ("loss < 0.1 and epoch > 3", {"loss": 0.05, "epoch": 4}, {}, True),
        ("loss < 0.1 and epoch > 3", {"loss": 0.05, "epoch": 2}, {}, False),
        ("loss < 0.1 or epoch > 3", {"loss": 0.5, "epoch": 4}, {}, True),
        ("not (loss > 1)", {"loss": 0.5}, {}, True),
        ("parameters.optimizer == 'adam'", {}, {"optimizer": "adam"}, True),
        ('parameter.optimizer != "adam"', {}, {"optimizer": "sgd"}, True),
        ("lr * 10 <= 1", {}, {"lr": 0.1}, True),
        ("-loss > -0.2", {"loss": 0.1}, {}, True),
        ("0 < x < 10", {"x": 5}, {}, True),
        ("0 < x < 10", {"x": 50}, {}, False),
        ("done == true", {"done": True}, {}, True),
        ("metadata.val.loss < 1", {"val": {"loss": 0.5}}, {}, True),
        ("metadata.val.loss < 1", {"val.loss": 0.5}, {}, True),
        ("accuracy > 0.5", {"accuracy": "0.9"}, {}, True),
        ("(a > 1 or b > 1) and not c", {"a": 2, "c": False}, {}, True),
        ("x % 2 == 1", {"x": 3}, {}, True),
    ],
)
def test_evaluate(text: str, metadata: dict, parameters: dict, expected: bool) -> None:
    assert parse_expression(text).evaluate(metadata, parameters) is expected


@pytest.mark.parametrize(
    "text",
    [
        "missing > 1",
        "missing < 1",
        "missing == 1",
        "metadata.missing * 2 > 0",
        "x / 0 > 1",
        "name > 1",
    ],
)
def test_missing_names_and_bad_values_make_comparisons_false(text: str) -> None:
    assert parse_expression(text).evaluate({"x": 1, "name": "abc"}, {}) is False


def test_not_of_missing_is_true() -> None:
    assert parse_expression("not (missing > 1)").evaluate({}, {}) is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expression is empty"),
        ("accuracy >", "unexpected end of expression at column 11"),
        ("accuracy >> 1", "unexpected '>' at column 11"),
        ("(a > 1", "missing closing parenthesis at column 7"),
        ("a > 1)", "unexpected ')' at column 6"),
        ("__import__('os').system('x')", "unexpected character '.' at column 17"),
        ("open('f')", "unexpected '(' at column 5"),
        ("a ; b", "unexpected character ';' at column 3"),
        ("stop me if you can", "unexpected 'me' at column 6"),
        ("a > 1 and", "unexpected end of expression at column 10"),
        ("x" * 5000, "expression is longer than 4096 characters"),
        ("(" * 100 + "1" + ")" * 100, "expression is nested more than 48 levels deep at column 50"),
        ("not " * 100 + "x", "expression is nested more than 48 levels deep at column 197"),
        ("+".join(["a"] * 300), "expression has more than 512 tokens"),
    ],
)
def test_malformed_expressions_are_rejected(text: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=f"^{re.escape(message)}$") as caught:
        parse_expression(text)
    assert isinstance(caught.value, ConfigError)


def test_expression_equality_names_and_str() -> None:
    expression = parse_expression("metadata.acc > 0.9 and loss < 1 and metadata.acc < 1")
    assert expression == parse_expression("metadata.acc > 0.9 and loss < 1 and metadata.acc < 1")
    assert expression.names == ("metadata.acc", "loss")
    assert str(expression) == "metadata.acc > 0.9 and loss < 1 and metadata.acc < 1"
