"""Task blueprints: types, variant parameter styles and the values each produces."""

from __future__ import annotations

import re
from types import MappingProxyType

import pytest

from sweeper.config import Config, SearchRange, TaskParameter, parse_config
from sweeper.errors import ConfigError

from .conftest import STEP, refusals


def variant(style: str, **rules: object) -> TaskParameter:
    return TaskParameter(name="x", style=style, rules=MappingProxyType(rules))


def test_task_fields(full: Config) -> None:
    task = full.get_task("sweep")
    assert task.step == "train"
    assert task.type == "bayesian_tpe"
    assert task.description == "Tune the learning rate"
    assert (task.execution_count, task.execution_batch_size, task.maximum_queued_executions) == (
        20,
        4,
        2,
    )
    assert (task.optimization_target_metric, task.optimization_target_value) == ("accuracy", 0.99)
    assert task.on_child_error == "stop-all-and-error"
    assert task.stop_condition is not None
    assert task.stop_condition.evaluate({"accuracy": 0.995, "loss": 0.1}, {}) is True
    assert task.reuse_children is True
    assert task.engine == "optuna"
    assert [(p.name, p.style) for p in task.parameters] == [
        ("learning-rate", "random"),
        ("max-steps", "linear"),
        ("layers", "multiple"),
        ("optimizer", "multiple"),
        ("architecture", "logspace"),
    ]
    manual = full.get_task("manual")
    assert manual.type == "manual_search"
    assert manual.parameter_sets == (
        {"max-steps": 10, "learning-rate": 0.1},
        {"max-steps": 20, "learning-rate": 0.01},
    )


@pytest.mark.parametrize(
    ("written", "normalized"),
    [
        ("grid_search", "grid_search"),
        ("Grid-Search", "grid_search"),
        ("RANDOM-SEARCH", "random_search"),
        ("bayesian_tpe", "bayesian_tpe"),
        ("manual-search", "manual_search"),
        ("distributed", "distributed"),
    ],
)
def test_task_type_is_normalized(written: str, normalized: str) -> None:
    config = parse_config(
        STEP + f"- task: {{name: t, step: train, type: {written}, parameters: []}}\n"
    )
    assert config.get_task("t").type == normalized


def test_task_type_defaults_to_grid_search() -> None:
    assert (
        parse_config(STEP + "- task: {name: t, step: train, parameter-sets: []}\n")
        .get_task("t")
        .type
        == "grid_search"
    )


def test_single_and_multiple() -> None:
    assert variant("single", value=25).values() == [25]
    assert variant("multiple", items=[25, 26, "a"]).values() == [25, 26, "a"]


def test_linear_is_inclusive() -> None:
    assert variant("linear", start=25, end=25, step=1).values() == [25]
    assert variant("linear", start=1, end=10, step=3).values() == [1, 4, 7, 10]
    assert variant("linear", start=0, end=1, step=0.25).values() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert variant("linear", start=0, end=0.3, step=0.1).values() == [0.0, 0.1, 0.2, 0.3]
    assert variant("linear", start=3, end=1, step=-1).values() == [3, 2, 1]
    assert variant("linear", start=0, end=1, step=0.5, integerify=True).values() == [0, 0, 1]


def test_logspace() -> None:
    assert variant("logspace", start=1, end=3, count=3).values() == pytest.approx(
        [10.0, 100.0, 1000.0]
    )
    assert variant("logspace", start=0, end=3, count=4, base=2).values() == pytest.approx(
        [1.0, 2.0, 4.0, 8.0]
    )
    assert variant("logspace", min=-5, max=-1, count=5).values() == pytest.approx(
        [1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
    )
    assert variant("logspace", start=1, end=3, count=3, integerify=True).values() == [10, 100, 1000]
    assert variant("logspace", start=2, end=9, count=1).values() == [100.0]


def test_random_is_reproducible_with_a_seed_and_stays_in_range() -> None:
    uniform = variant("random", min=1, max=25, count=10, seed=7)
    # the same values in every process and release (a resumed task asks for the same trials),
    # from another object with the same rules too
    seven = [8.771986, 4.620380, 16.622427, 2.738471, 13.861168]
    seven += [9.776534, 2.391974, 13.178458, 1.899896, 11.407496]
    assert uniform.values() == pytest.approx(seven, abs=1e-6)
    assert uniform.values() == variant("random", min=1, max=25, count=10, seed=7).values()
    assert len(uniform.values()) == 10
    assert all(1 <= v <= 25 for v in uniform.values())
    assert uniform.values() != variant("random", min=1, max=25, count=10, seed=8).values()
    unseeded = variant("random", min=1, max=25, count=10)
    assert unseeded.values() != unseeded.values()  # without a seed: new draws each time
    log = variant("random", min=1e-5, max=1e-1, count=200, seed=1, distribution="loguniform")
    small = sum(1 for v in log.values() if v < 1e-3)
    assert 80 < small < 120  # half the draws fall in the lower half of the exponents
    assert all(
        isinstance(v, int)
        for v in variant("random", min=1, max=9, count=5, seed=1, integerify=True).values()
    )


def test_search_range() -> None:
    assert variant(
        "random", min=0.001, max=0.1, count=3, distribution="loguniform"
    ).search_range() == SearchRange(0.001, 0.1, "loguniform", False)
    assert variant("random", min=1, max=9, count=3, integerify=True).search_range() == SearchRange(
        1, 9, "uniform", True
    )
    assert variant("linear", start=10, end=0, step=-5).search_range() == SearchRange(
        0, 10, "uniform", True
    )
    assert variant("logspace", start=-3, end=-1, count=3).search_range().log is True
    with pytest.raises(ConfigError, match='task parameter "x": style multiple has no range'):
        variant("multiple", items=[1]).search_range()


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (
            "{style: linear, rules: {start: 0, end: 1}}",
            'task parameter "x": rules: style linear needs "step"',
        ),
        (
            "{style: linear, rules: {start: 0, end: 10, step: -1}}",
            'task parameter "x": rules: step goes away from end; no values would be produced',
        ),
        (
            "{style: linear, rules: {start: 0, end: 1000000, step: 1}}",
            'task parameter "x": rules expand to 1000001 values; at most 10000 are allowed',
        ),
        (
            "{style: logspace, rules: {start: 0, end: 1}}",
            'task parameter "x": rules: rules need "count"',
        ),
        (
            "{style: logspace, rules: {start: 0, end: 1, count: 2.5}}",
            'task parameter "x": rules: count must be a whole number of at least 1',
        ),
        (
            "{style: random, rules: {min: 0, max: 1, count: 2, distribution: normal}}",
            'task parameter "x": rules: distribution "normal" is not one of: uniform, loguniform',
        ),
        (
            "{style: random, rules: {min: 0, max: 1, count: 2, distribution: loguniform}}",
            'task parameter "x": rules: min must be positive for a loguniform distribution',
        ),
        (
            "{style: random, rules: {min: a, max: 1, count: 2}}",
            'task parameter "x": rules: min must be a number',
        ),
        (
            "{style: multiple, rules: {items: []}}",
            'task parameter "x": rules: items must not be empty',
        ),
        (
            "{style: multiple, rules: {items: [[1]]}}",
            'task parameter "x": rules: items: item 1 must be a number, a string or true/false',
        ),
        ("{style: single, rules: 5}", 'task parameter "x": rules must be a mapping'),
        ("{rules: {value: 1}}", 'task parameter "x": missing required key "style"'),
    ],
)
def test_rule_errors(rules: str, message: str) -> None:
    text = (
        STEP
        + "    parameters: [{name: x, type: float}]\n- task:\n    name: t\n    step: train\n    parameters:\n      - {name: x, "
        + rules[1:]
        + "\n"
    )
    assert refusals(text) == [message]


def test_a_task_valohai_accepts_but_sweeper_cannot_run_is_refused_when_run() -> None:
    text = (
        STEP
        + "    parameters: [{name: x, type: float}]\n- task:\n    name: t\n    step: train\n"
        + "    parameters:\n      - {name: x, style: linear, rules: {start: 0, end: 1}}\n"
    )
    config = parse_config(text)  # the file is valid, as for Valohai
    (warning,) = config.warnings
    assert warning.blocks_run
    with pytest.raises(ConfigError, match=f"^{re.escape(str(warning))}$"):
        config.get_task("t")


def test_rules_of_other_styles_warn() -> None:
    config = parse_config(
        STEP + "    parameters: [{name: x, type: integer}]\n"
        "- task: {name: t, step: train, parameters: [{name: x, style: random, rules: {min: 1, max: 2, count: 1, base: 10}}]}\n"
    )
    assert [str(w) for w in config.warnings] == [
        'valohai.yaml:6: warning: task parameter "x": rules: base has no effect with style random'
    ]


def test_parameter_sets_must_name_step_parameters() -> None:
    text = (
        STEP
        + "    parameters: [{name: x}]\n- task: {name: t, step: train, type: manual_search, parameter-sets: [{x: 1, y: 2}]}\n"
    )
    assert refusals(text) == [
        'task "t": parameter-sets item 1: parameter "y" does not exist in step "train"'
    ]


def test_missing_step_is_reported() -> None:
    assert refusals("- task: {name: t, step: nope, parameter-sets: []}\n") == [
        'task "t": step "nope" does not exist; known steps: (none)'
    ]


def test_random_style_needs_a_count_except_in_bayesian_tasks() -> None:
    task = "- task: {name: t, step: train, type: TYPE, parameters: [{name: x, style: random, rules: {min: 0.1, max: 1}}]}\n"
    base = STEP + "    parameters: [{name: x, type: float}]\n"
    config = parse_config(base + task.replace("TYPE", "bayesian_tpe"))
    assert config.get_task("t").get_parameter("x").search_range() == SearchRange(0.1, 1.0)
    with pytest.raises(ConfigError, match='task parameter "x": rules need count'):
        config.get_task("t").get_parameter("x").values()
    assert refusals(base + task.replace("TYPE", "random_search")) == [
        'task parameter "x": rules: style random needs "count" (only bayesian_tpe tasks do without)'
    ]
