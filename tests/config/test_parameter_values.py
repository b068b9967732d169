"""Parameter values from the command line and from the sweep engine: types, ranges, choices."""

from __future__ import annotations

import re

import pytest

from sweeper.config import Config, Parameter
from sweeper.errors import ParameterValueError


def test_parse_parameter_values_types(full: Config) -> None:
    step = full.get_step("train")
    assert step.parse_parameter_values(
        {
            "max-steps": ["42"],
            "learning-rate": ["1e-3"],
            "optimizer": ["sgd"],
            "augment": ["No"],
            "layers": ["1", "2"],
            "tag": ["a b"],
        }
    ) == {
        "max-steps": 42,
        "learning-rate": 0.001,
        "optimizer": "sgd",
        "augment": False,
        "layers": [1, 2],
        "tag": ["a b"],
    }


@pytest.mark.parametrize(
    ("text", "value"),
    [("true", True), ("YES", True), ("1", True), ("false", False), ("no", False), ("0", False)],
)
def test_flag_words(full: Config, text: str, value: bool) -> None:
    assert full.get_step("train").get_parameter("augment").parse_value(text) is value


@pytest.mark.parametrize(
    ("name", "texts", "message"),
    [
        ("max-steps", ["abc"], 'parameter "max-steps": "abc" is not an integer'),
        ("max-steps", ["1.5"], 'parameter "max-steps": "1.5" is not an integer'),
        ("max-steps", [""], 'parameter "max-steps": "" is not an integer'),
        ("max-steps", ["0"], 'parameter "max-steps": 0 is less than the minimum 1'),
        ("max-steps", ["10001"], 'parameter "max-steps": 10001 is greater than the maximum 10000'),
        ("learning-rate", ["fast"], 'parameter "learning-rate": "fast" is not a number'),
        ("learning-rate", ["nan"], 'parameter "learning-rate": "nan" is not a finite number'),
        ("learning-rate", ["2"], 'parameter "learning-rate": 2.0 is greater than the maximum 1'),
        (
            "optimizer",
            ["rmsprop"],
            'parameter "optimizer": "rmsprop" is not one of the choices: adam, sgd',
        ),
        (
            "augment",
            ["maybe"],
            'parameter "augment": "maybe" is not a flag value (use true/false, yes/no or 1/0)',
        ),
        ("max-steps", ["1", "2"], 'parameter "max-steps": only one value is allowed (got 2)'),
        (
            "nope",
            ["1"],
            'unknown parameter "nope" for step "train"; known parameters: max-steps, learning-rate, '
            "architecture, optimizer, augment, layers, tag",
        ),
    ],
)
def test_parse_parameter_values_errors(
    full: Config, name: str, texts: list[str], message: str
) -> None:
    with pytest.raises(ParameterValueError, match=f"^{re.escape(message)}$"):
        full.get_step("train").parse_parameter_values({name: texts})


def test_all_value_errors_are_reported_together(full: Config) -> None:
    message = (
        'parameter "max-steps": "x" is not an integer; '
        'parameter "optimizer": "y" is not one of the choices: adam, sgd'
    )
    with pytest.raises(ParameterValueError, match=f"^{re.escape(message)}$"):
        full.get_step("train").parse_parameter_values({"max-steps": ["x"], "optimizer": ["y"]})


def test_validate_typed_values() -> None:
    integer = Parameter(name="n", type="integer", min=1, max=5)
    assert integer.validate(3) == 3
    assert integer.validate(3.0) == 3
    assert integer.validate("4") == 4
    with pytest.raises(ParameterValueError, match=r'^parameter "n": 2.5 is not an integer$'):
        integer.validate(2.5)
    with pytest.raises(ParameterValueError, match=r'^parameter "n": True is not an integer$'):
        integer.validate(True)
    with pytest.raises(ParameterValueError, match=r'^parameter "n": a value is required$'):
        integer.validate(None)
    with pytest.raises(
        ParameterValueError, match=r'^parameter "n": only one value is allowed \(got 2\)$'
    ):
        integer.validate([1, 2])
    assert Parameter(name="n", type="integer", optional=True).validate(None) is None

    number = Parameter(name="x", type="float", choices=(0.1, 0.01))
    assert number.validate(0.1) == 0.1
    with pytest.raises(
        ParameterValueError, match=r'^parameter "x": 0.2 is not one of the choices: 0.1, 0.01$'
    ):
        number.validate(0.2)

    flag = Parameter(name="f", type="flag")
    assert flag.validate(True) is True
    assert flag.validate(0) is False
    assert flag.validate("yes") is True

    many = Parameter(name="m", type="integer", multiple="repeat", max=10)
    assert many.validate([1, "2"]) == [1, 2]
    assert many.validate(3) == [3]
    with pytest.raises(
        ParameterValueError, match=r'^parameter "m": 11 is greater than the maximum 10$'
    ):
        many.validate([1, 11])

    text = Parameter(name="s", choices=("1", "2"))
    assert text.validate(1) == "1"
    with pytest.raises(ParameterValueError, match="is not a string"):
        text.validate({"a": 1})


def test_default_parameter_values_leave_flags_out(full: Config) -> None:
    # valohai-yaml: "undefined flag will remain undefined regardless of default value".
    assert full.get_step("train").default_parameter_values() == {
        "max-steps": 300,
        "learning-rate": 0.001,
        "architecture": "10xRELU-SoftMax",
        "optimizer": "adam",
        "layers": [64, 32],
    }


def test_format_cli_float_formatting() -> None:
    lr = Parameter(name="lr", type="float")
    assert lr.format_cli(1e-05) == ["--lr=1e-05"]
    assert lr.format_cli(0.1) == ["--lr=0.1"]
    assert lr.format_cli(2.0) == ["--lr=2.0"]
    assert lr.format_cli(None) is None
