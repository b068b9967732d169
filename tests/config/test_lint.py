"""Lint: every problem is reported, with its file, line and an exact message."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweeper.config import Problem, lint_file, lint_text, load_config, parse_config
from sweeper.errors import ConfigError

from .conftest import DATA, STEP, errors, problems

# Every problem in data/errors.yaml, in line order (a file with one mistake per line or two).
EXPECTED = [
    'errors.yaml:8: error: parameter "lr": min must be a number',
    'errors.yaml:11: error: parameter "epochs": type "int" is not one of: string, integer, float, flag',
    'errors.yaml:12: warning: parameter "lr" is defined more than once (first at line 6); the last definition is used',
    'errors.yaml:15: error: parameter "mode": pass-as "--mode={val}" uses unknown placeholder {val}; use {name}, {value} or {v}',
    'errors.yaml:16: error: parameter "mode": multiple "sometimes" is not one of: none, repeat, separate',
    'errors.yaml:19: error: parameter "fast": flag parameters cannot be multiple',
    'errors.yaml:20: warning: parameter "fast": optional has no effect on flag parameters',
    'errors.yaml:23: warning: parameter "count": default "many" is not an integer',
    'errors.yaml:24: warning: parameter "count": min (10) is greater than max (1); no value fits',
    'errors.yaml:28: error: input "dataset": keep-directories "partial" is not one of: none, full, suffix',
    'errors.yaml:29: error: input "dataset": download "lazy" is not one of: always, on-demand',
    'errors.yaml:30: error: input "dataset": default: item 1 must be a string',
    'errors.yaml:30: error: input "dataset": default: item 2 must be a string',
    'errors.yaml:31: error: input "this-input-name-is-far-too-long-for-valohai-which-allows-sixty-four": name is longer than 64 characters',
    'errors.yaml:32: error: input (unnamed): missing required key "name"',
    'errors.yaml:34: warning: environment variable "BAD VAR": name must not contain "=" or spaces',
    'errors.yaml:35: error: step "train": time-limit "soon" is not a duration such as "1h 30m"',
    'errors.yaml:36: error: step "train": no-output-timeout must not be negative',
    "errors.yaml:38: warning: resources: cpu: min (4) is greater than max (2)",
    "errors.yaml:39: error: resources: memory: min must be a number",
    'errors.yaml:41: error: resources: device "nvidia.com/gpu" count must be a number of at least 1',
    'errors.yaml:42: error: resources: unknown key "disk"',
    'errors.yaml:43: error: step "train": stop-condition "accuracy >" is not a valid expression: unexpected end of expression at column 11',
    'errors.yaml:44: error: step "train": unknown key "imagee" (did you mean "image"?)',
    'errors.yaml:45: error: step "train": runtime-config-preset needs an environment as well',
    'errors.yaml:49: warning: step "empty-command": command is an empty list: the step runs nothing',
    'errors.yaml:51: error: step (unnamed): missing required key "name"',
    "errors.yaml:51: error: step (unnamed): image must be a string",
    "errors.yaml:52: error: step (unnamed): command must be a string or a list of strings",
    'errors.yaml:56: error: task "sweep": type "exhaustive" is not one of: grid_search, random_search, bayesian_tpe, manual_search, distributed',
    'errors.yaml:57: error: task "sweep": on-child-error "panic" is not one of: continue-and-complete, continue-and-error, stop-all-and-error',
    'errors.yaml:58: warning: task "sweep": execution-count must be at least 1',
    'errors.yaml:62: warning: task parameter "lr": rules: min (1) is greater than max (0)',
    'errors.yaml:65: warning: task parameter "lr2": rules: step must not be 0',
    'errors.yaml:67: error: task parameter "lr3": style "zigzag" is not one of: single, multiple, linear, logspace, random',
    'errors.yaml:73: warning: task "grid": parameter "nope" does not exist in step "train"; known parameters: lr, epochs, mode, fast, count',
    'errors.yaml:78: error: task parameter "epochs": rules: unknown key "bogus"',
    'errors.yaml:85: error: node "a": on-error "explode" is not one of: stop-all, stop-next, continue, retry',
    'errors.yaml:88: warning: node "a": action: if "metadata.x >>> 1" is not a valid expression: unexpected \'>\' at column 13',
    'errors.yaml:90: error: pipeline "pipe": node "b": step "nowhere" does not exist; known steps: train, empty-command',
    'errors.yaml:93: error: pipeline "pipe": node "c": task "no-such-task" does not exist; known tasks: grid',
    'errors.yaml:97: error: node "d": type "robot" is not one of: execution, task, deployment',
    'errors.yaml:98: error: pipeline "pipe": node "a" is defined more than once (first at line 82)',
    'errors.yaml:102: error: pipeline "pipe": edge [a.output.model*, e.input.dataset]: target node "e" does not exist; known nodes: a, b, c',
    'errors.yaml:103: warning: pipeline "pipe": edge [a.output.model*, a.input.dataset]: connects node "a" to itself; sweeper cannot run it',
    'errors.yaml:104: warning: pipeline "pipe": edge [a.output.model, a.input.missing-input]: connects node "a" to itself; sweeper cannot run it',
    'errors.yaml:105: error: edge: source "a.output" must look like node.type.key',
    'errors.yaml:106: error: edge: source "a.sideways.x" has unknown type "sideways"; use one of: output, input, parameter, metadata, file, environment-variable, dependency, deployment',
    'errors.yaml:107: error: edge: missing required key "target"',
    'errors.yaml:109: error: pipeline "pipe": parameter "p": target node "a" (step "train") has no parameter "unknown"; known: lr, epochs, mode, fast, count',
    'errors.yaml:111: warning: unknown top-level item "stepp" (did you mean "step"?); Valohai ignores it; expected one of: step, task, pipeline, endpoint, deployment',
    'errors.yaml:113: error: each top-level item must be a mapping such as "- step: ..."',
]


def test_every_problem_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "errors.yaml"
    path.write_bytes((DATA / "errors.yaml").read_bytes())
    found = lint_file(path)
    assert [str(p).replace(str(path), "errors.yaml") for p in found] == EXPECTED


def test_config_error_lists_every_error_but_no_warning() -> None:
    with pytest.raises(ConfigError, match=r"^\S*errors\.yaml:\d+: error: ") as caught:
        load_config(DATA / "errors.yaml")
    message = str(caught.value)
    lines = message.splitlines()
    assert len(lines) == sum(1 for e in EXPECTED if ": error: " in e)
    assert all(f"{DATA / 'errors.yaml'}:" in line and ": error: " in line for line in lines)
    assert "optional has no effect" not in message


def test_problem_str_and_fields() -> None:
    problem = Problem("valohai.yaml", 12, None, "error", 'parameter "lr": min must be a number')
    assert str(problem) == 'valohai.yaml:12: error: parameter "lr": min must be a number'
    assert (
        str(Problem("x.yaml", None, None, "error", "file not found"))
        == "x.yaml: error: file not found"
    )


def test_the_documented_example_message() -> None:
    text = STEP + "    parameters:\n      - name: lr\n        type: float\n        min: low\n"
    assert problems(text) == ['valohai.yaml:8: error: parameter "lr": min must be a number']


def test_valid_file_has_no_errors() -> None:
    assert [p for p in lint_file(DATA / "full.yaml") if p.level == "error"] == []
    assert [p for p in lint_file(DATA / "rendering.yaml")] == []


def test_yaml_syntax_error_has_line_and_column() -> None:
    found = lint_text("- step:\n    name: a\n   image: b\n", "valohai.yaml")
    assert len(found) == 1
    assert (found[0].line, found[0].column, found[0].level) == (3, 4, "error")
    assert str(found[0]).startswith("valohai.yaml:3: error: YAML syntax error (line 3, column 4): ")


def test_tab_indentation_is_a_syntax_error() -> None:
    assert errors("- step:\n\tname: a\n") == [
        "valohai.yaml:2: error: YAML syntax error (line 2, column 1): "
        "while scanning for the next token; found character '\\t' that cannot start any token"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "",
            "valohai.yaml:1: error: the file is empty; expected a list of step, task and pipeline items",
        ),
        (
            "step: {}",
            'valohai.yaml:1: error: the top level must be a list of step, task and pipeline items ("- step: ...")',
        ),
        ("- step: x", "valohai.yaml:1: error: step must be a mapping"),
        (
            "- {step: {name: a, image: b, command: c}, task: {}}",
            'valohai.yaml:1: warning: the item is read as a step; its other keys ("task") are ignored',
        ),
        (
            "- step: {name: a, image: b}",
            'valohai.yaml:1: error: step "a": missing required key "command"',
        ),
    ],
)
def test_structural_errors(text: str, message: str) -> None:
    assert problems(text) == [message]


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert [str(p) for p in lint_file(missing)] == [f"{missing}: error: file not found"]
    with pytest.raises(ConfigError, match="file not found"):
        load_config(missing)
    assert [str(p) for p in lint_file(tmp_path)] == [
        f"{tmp_path}: error: is a directory, not a file"
    ]


def test_warnings_do_not_raise() -> None:
    config = parse_config(STEP + "    parameters:\n      - {name: f, type: flag, optional: true}\n")
    assert [str(w) for w in config.warnings] == [
        'valohai.yaml:6: warning: parameter "f": optional has no effect on flag parameters'
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "      - {name: n, type: integer, default: 1.5}",
            'parameter "n": default 1.5 is not an integer',
        ),
        (
            "      - {name: n, type: integer, default: 0, min: 1}",
            'parameter "n": default 0 is less than the minimum 1',
        ),
        ("      - {name: s, default: 5}", 'parameter "s": default 5 is not a string'),
        (
            "      - {name: s, default: c, choices: [a, b]}",
            'parameter "s": default "c" is not one of the choices: a, b',
        ),
        (
            "      - {name: s, pass-true-as: --x}",
            'parameter "s": pass-true-as has no effect on string parameters',
        ),
        ("      - {name: s, min: 1}", 'parameter "s": min has no effect on string parameters'),
        (
            "      - {name: f, type: flag, pass-as: --f, pass-true-as: --t}",
            'parameter "f": pass-as has no effect when pass-true-as or pass-false-as is set',
        ),
    ],
)
def test_parameter_warnings(extra: str, message: str) -> None:
    assert problems(STEP + "    parameters:\n" + extra + "\n") == [
        f"valohai.yaml:6: warning: {message}"
    ]


def test_bayesian_only_keys_and_parameter_sets_warn() -> None:
    text = STEP + (
        "    parameters: [{name: x, type: integer}]\n"
        "- task:\n"
        "    name: t\n"
        "    step: train\n"
        "    engine: optuna\n"
        "    parameter-sets: [{x: 1}]\n"
        "    parameters: [{name: x, style: single, rules: {value: 1}}]\n"
    )
    assert problems(text) == [
        'valohai.yaml:9: warning: task "t": engine only makes sense for bayesian_tpe tasks',
        'valohai.yaml:10: warning: task "t": parameter-sets only make sense with type manual_search',
    ]


def test_task_values_are_checked_against_the_step() -> None:
    text = STEP + (
        "    parameters: [{name: x, type: integer, max: 5}]\n"
        "- task:\n"
        "    name: t\n"
        "    step: train\n"
        "    parameters: [{name: x, style: multiple, rules: {items: [1, 9, a]}}]\n"
    )
    # Valohai does not check a task against its step: warnings that block a run.
    assert problems(text) == [
        'valohai.yaml:9: warning: task "t": parameter "x": 9 is greater than the maximum 5',
        'valohai.yaml:9: warning: task "t": parameter "x": "a" is not an integer',
    ]
    with pytest.raises(ConfigError, match="9 is greater than the maximum 5"):
        parse_config(text).get_task("t")


def test_duplicate_steps_and_keys() -> None:
    # Valohai keeps the last of two steps with one name (and warns): so does sweeper.
    assert problems(STEP + STEP.replace("python:3.12", "python:3.13")) == [
        'valohai.yaml:6: warning: step "train" is defined more than once (first at line 2); the last definition is used'
    ]
    text = STEP + STEP.replace("python:3.12", "python:3.13")
    assert parse_config(text).get_step("train").image == "python:3.13"
    assert problems(STEP.replace("name: train", "name: train\n    name: again")) == [
        'valohai.yaml:3: warning: duplicate key "name" (first at line 2); the last one wins'
    ]
