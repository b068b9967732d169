"""Hostile input gives a clear error: never a traceback, never a hang."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from sweeper.config import lint_file, lint_text, load_config, parse_config
from sweeper.config.input import _KEYS as INPUT_KEYS
from sweeper.config.parameter import _KEYS as PARAMETER_KEYS
from sweeper.config.pipeline import _KEYS as PIPELINE_KEYS
from sweeper.config.step import _KEYS as STEP_KEYS
from sweeper.config.task import _KEYS as TASK_KEYS
from sweeper.errors import ConfigError

pytestmark = pytest.mark.faults

BILLION_LAUGHS = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n"
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)


def lines(text: str) -> list[str]:
    return [str(p) for p in lint_text(text, "valohai.yaml")]


def test_alias_bomb_is_refused_at_the_value_cap() -> None:
    # refused by counting values as they expand, not after building a billion of them
    found = lines("a: &a [x, x, x, x, x, x, x, x, x]\n" + BILLION_LAUGHS)
    assert found == [
        "valohai.yaml:1: error: YAML expands to more than 200000 values (are aliases nested too deeply?)"
    ]


def test_recursive_aliases_and_merges_are_refused() -> None:
    assert lines("- &a [*a]\n") == [
        "valohai.yaml:1: error: YAML is nested more than 64 levels deep"
    ]
    assert lines("- step: &s\n    <<: *s\n") == ["valohai.yaml:1: error: recursive merge key (<<)"]


def test_deep_nesting_is_refused() -> None:
    assert lines("[" * 5000 + "]" * 5000) == ["valohai.yaml: error: YAML is nested too deeply"]


def test_very_large_input_is_refused(tmp_path: Path) -> None:
    assert lines("#" * 5_000_001) == [
        "valohai.yaml: error: file is too large (5000001 characters; the limit is 5000000)"
    ]
    path = tmp_path / "valohai.yaml"
    path.write_bytes(b"#" * 5_000_001)
    assert [str(p) for p in lint_file(path)] == [
        f"{path}: error: file is too large (more than 5000000 bytes)"
    ]


def test_non_utf8_bytes(tmp_path: Path) -> None:
    path = tmp_path / "valohai.yaml"
    path.write_bytes(b"- step:\n    name: caf\xe9\n")
    message = f"{path}:2: error: the file is not valid UTF-8 (byte 0xe9 at offset 21)"
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        load_config(path)


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "valohai.yaml"
    path.write_bytes("\ufeff- step: {name: café, image: i, command: c}\n".encode())
    assert list(load_config(path).steps) == ["café"]


def test_unacceptable_characters() -> None:
    assert lines("- step:\n    name: a\x00b\n") == [
        "valohai.yaml:2: error: YAML syntax error (line 2, column 12): unacceptable character #x0000"
    ]


@pytest.mark.parametrize(
    ("escaped", "shown"),
    [
        ("a\\x01b", "a\\u0001b"),
        ("a\\nb", "a\\nb"),
        ("a\\tb", "a\\tb"),
        ("a\\x1b[31mb", "a\\u001b[31mb"),
    ],
)
def test_names_with_control_characters(escaped: str, shown: str) -> None:
    assert lines(f'- step: {{name: "{escaped}", image: i, command: c}}\n') == [
        # valohai-yaml accepts such a name: a warning, and sweeper refuses to run the step
        f'valohai.yaml:1: warning: step "{shown}": name "{shown}" contains control characters'
    ]


def test_python_tags_are_never_constructed() -> None:
    assert lines("- step: {name: !!python/name:os.system a, image: i, command: c}\n") == [
        'valohai.yaml:1: error: invalid value "a": could not determine a constructor for the tag '
        "'tag:yaml.org,2002:python/name:os.system'"
    ]
    assert lines("- step: !!python/object/apply:os.system ['echo hi']\n") == [
        "valohai.yaml:1: error: step must be a mapping"
    ]


def test_absurd_durations() -> None:
    assert lines("- step: {name: a, image: i, command: c, time-limit: 99999999999999999999}\n") == [
        'valohai.yaml:1: error: step "a": time-limit must be at most 2147483647 seconds'
    ]


WRONG_VALUES = ["[1, 2]", "{a: 1}"]


def _wrong_type_documents() -> list[tuple[str, str]]:
    documents: list[tuple[str, str]] = []
    base_step = "name: s\n    image: i\n    command: c\n"
    for key in STEP_KEYS:
        for value in WRONG_VALUES:
            body = (
                base_step.replace(f"{key}: ", "#")
                if key in ("name", "image", "command")
                else base_step
            )
            documents.append((f"step.{key}={value}", f"- step:\n    {body}    {key}: {value}\n"))
    for key in PARAMETER_KEYS:
        for value in WRONG_VALUES:
            documents.append(
                (
                    f"parameter.{key}={value}",
                    f"- step:\n    {base_step}    parameters:\n      - name: p\n        {key}: {value}\n",
                )
            )
    for key in INPUT_KEYS:
        for value in WRONG_VALUES:
            documents.append(
                (
                    f"input.{key}={value}",
                    f"- step:\n    {base_step}    inputs:\n      - name: x\n        {key}: {value}\n",
                )
            )
    for key in TASK_KEYS:
        for value in WRONG_VALUES:
            documents.append(
                (
                    f"task.{key}={value}",
                    f"- step:\n    {base_step}- task:\n    name: t\n    step: s\n    {key}: {value}\n",
                )
            )
    for key in PIPELINE_KEYS:
        for value in ["{a: 1}", "1"]:
            documents.append(
                (
                    f"pipeline.{key}={value}",
                    f"- pipeline:\n    name: p\n    nodes: []\n    edges: []\n    {key}: {value}\n",
                )
            )
    return documents


@pytest.mark.parametrize(
    ("label", "text"), _wrong_type_documents(), ids=[d[0] for d in _wrong_type_documents()]
)
def test_wrong_types_in_every_field_are_errors(label: str, text: str) -> None:
    found = lint_text(text, "valohai.yaml")
    field = label.split("=")[0].split(".")[1]
    allowed_as_is = {
        "parameter.default=[1, 2]",
        "parameter.default={a: 1}",  # Valohai reads any default: a warning that blocks a run
        "input.default=[1, 2]",
        "parameter.widget={a: 1}",
        "parameter.choices=[1, 2]",
    }
    if label in allowed_as_is:
        assert all(p.level == "warning" or field in p.message for p in found)
        return
    errors = [p for p in found if p.level == "error"]
    assert errors, f"no error for {label}: {found}"
    assert all(p.line is not None for p in errors)
    with pytest.raises(ConfigError, match=re.escape(str(errors[0]))):  # lint's words
        parse_config(text)


#: A valid document with something of every kind of list and mapping, for garbage to land in.
VALID = """- step:
    name: train
    image: python:3.12
    command: python train.py {parameters}
    parameters:
      - name: lr
        type: float
        default: 0.1
    inputs:
      - name: data
        default: s3://bucket/data.csv
- task:
    name: sweep
    step: train
    parameters:
      - name: lr
        style: multiple
        rules: {items: [0.1, 0.2]}
"""


def test_garbage_in_random_places_never_raises_anything_but_config_error() -> None:
    fragments = [
        "- ",
        "step:",
        "{",
        "}",
        "[",
        "]",
        ": ",
        "&a ",
        "*a ",
        "<<: ",
        "!!str ",
        "'",
        '"',
        "\n",
        "  ",
        "x",
        "1",
        "-",
    ]
    import random

    rng = random.Random(1234)
    outcomes = {"parsed": 0, "refused": 0}
    for attempt in range(300):
        if attempt % 2:  # garbage alone
            text = "".join(rng.choice(fragments) for _ in range(rng.randint(1, 40)))
        else:  # garbage put in random places of a valid file: some of it still parses
            text = VALID
            for _ in range(rng.randint(1, 2)):
                at = rng.randrange(len(text) + 1)
                text = text[:at] + rng.choice(fragments) + text[at:]
        found = lint_text(text)  # lint never raises either
        try:
            config = parse_config(text)
        except ConfigError as exc:  # anything else fails the test with its traceback
            outcomes["refused"] += 1
            lines = str(exc).splitlines()
            # one "FILE:LINE: error: message" per error, the same ones lint reports
            assert lines == [str(p) for p in found if p.level == "error"]
            assert all(re.match(r"^valohai\.yaml(:\d+)?: error: \S", line) for line in lines)
        else:
            outcomes["parsed"] += 1
            assert not [p for p in found if p.level == "error"]
            # what parsed, however odd, serializes to a file that parses to the same thing
            again = parse_config(yaml.safe_dump(config.serialize(), sort_keys=False))
            assert again == config, text
            assert again.serialize() == config.serialize(), text
    # both paths were taken (a test that never refused, or never parsed, would prove nothing)
    assert outcomes["refused"] > 0 and outcomes["parsed"] > 0, outcomes
