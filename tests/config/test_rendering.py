"""Command rendering identical to Valohai's (valohai-yaml ``Step.build_command``).

Expected strings come from Valohai's documentation ("The above would generate the following
command by default: python train.py --max-steps=300 --lr=0.001 arc 10xRELU-SoftMax") and from
valohai-yaml's own command tests.
"""

from __future__ import annotations

import shlex

import pytest

from sweeper.config import Config, Step, load_config, parse_config
from sweeper.errors import ParameterValueError

from .conftest import DATA


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(DATA / "rendering.yaml")


def test_documented_example(config: Config) -> None:
    assert config.get_step("documented").build_command() == [
        "python train.py --max-steps=300 --lr=0.001 arc 10xRELU-SoftMax"
    ]


def test_given_values_overlay_defaults(config: Config) -> None:
    step = config.get_step("documented")
    assert step.build_command({"learning-rate": 1e-05, "architecture": "a b"}) == [
        "python train.py --max-steps=300 --lr=1e-05 arc 'a b'"
    ]


def test_none_leaves_the_parameter_out(config: Config) -> None:
    assert config.get_step("documented").build_command(
        {"architecture": None, "max-steps": None}
    ) == ["python train.py --lr=0.001"]


def test_values_are_shell_quoted() -> None:
    step = parse_config(
        "- step: {name: s, image: i, command: 'run {parameters}', parameters: [{name: spec, pass-as: '--spec {v}'}]}"
    ).get_step("s")
    value = 'foo bar""\'"\'"; quux'
    # The literal below is the one valohai-yaml's own test expects for this value.
    assert step.build_command({"spec": value}) == [
        "run --spec 'foo bar\"\"'\"'\"'\"'\"'\"'\"; quux'"
    ]
    assert shlex.split(step.build_command({"spec": value})[0]) == ["run", "--spec", value]
    assert step.build_command({"spec": "$(rm -rf /)"}) == ["run --spec '$(rm -rf /)'"]


def test_multiple_values(config: Config) -> None:
    step = config.get_step("multiple")
    assert step.build_command({}) == [
        "echo --unlabeled-samples=60000 --encoder-layers=1000-500-250-250-250-10 "
        "--denoising-cost-x=1000,1,0.01,0.01,0.01,0.01,0.01 --decoder-spec gauss --decoder-spec railgun"
    ]
    assert step.build_command({"encoder-layers": 6, "denoising-cost-x": (2, "e")}) == [
        "echo --unlabeled-samples=60000 --encoder-layers=6 --denoising-cost-x=2,e "
        "--decoder-spec gauss --decoder-spec railgun"
    ]
    for empty in (None, []):
        assert step.build_command({"encoder-layers": empty, "decoder-spec": ["marshmallow"]}) == [
            "echo --unlabeled-samples=60000 --denoising-cost-x=1000,1,0.01,0.01,0.01,0.01,0.01 "
            "--decoder-spec marshmallow"
        ]


def test_flags(config: Config) -> None:
    step = config.get_step("flags")
    # As in valohai-yaml, flag defaults are ignored and a flag without a value is not
    # passed at all: neither pass-true-as nor pass-false-as renders.
    assert step.build_command() == ["foo"]
    assert step.build_command(
        {"case-insensitive": True, "nice": False, "naughty": False, "verbose": True}
    ) == ["foo --ignore-case --naughty=not-naughty --verbose"]
    assert step.build_command(
        {"case-insensitive": False, "nice": True, "naughty": True, "verbose": False}
    ) == ["foo --case-sensitive --behave-nice"]


def test_optional_parameters_without_value_are_skipped(config: Config) -> None:
    assert config.get_step("optional").build_command() == ["foo --varA=123 --varC=456"]
    assert config.get_step("optional").build_command({"varB": 0, "varD": -1}) == [
        "foo --varA=123 --varB=0 --varC=456 --varD=-1"
    ]


def test_placeholders(config: Config) -> None:
    step = config.get_step("placeholders")
    assert step.build_command({"spec": "hello", "epochs": 840}) == [
        "cd /work",
        "python src/main.py --decoder-spec hello {parameter:missing} --n 840",
        "echo ${HOME} {unknown} {parameter-value:missing} --decoder-spec hello --epochs=840",
    ]


def test_falsy_values_are_rendered(config: Config) -> None:
    step = config.get_step("placeholders")
    assert (
        step.build_command({"spec": "", "epochs": 0})[1]
        == "python src/main.py --decoder-spec '' {parameter:missing} --n 0"
    )


def test_parameters_placeholder_without_parameters() -> None:
    step = parse_config(
        "- step: {name: s, image: i, command: 'Where are the ${unicorns}? The {parameters} are here!'}"
    ).get_step("s")
    assert step.build_command() == ["Where are the ${unicorns}? The  are here!"]


def test_source_path_is_left_alone_when_not_set() -> None:
    step = parse_config("- step: {name: s, image: i, command: 'python {source-path}'}").get_step(
        "s"
    )
    assert step.build_command() == ["python {source-path}"]


def test_list_value_for_single_parameter_is_refused(config: Config) -> None:
    with pytest.raises(ParameterValueError, match='parameter "max-steps": list value'):
        config.get_step("documented").build_command({"max-steps": [1, 2]})


def test_rendering_with_typed_values_from_the_cli(config: Config) -> None:
    step: Step = config.get_step("documented")
    values = step.parse_parameter_values({"max-steps": ["10"], "learning-rate": ["0.5"]})
    assert step.build_command(values) == [
        "python train.py --max-steps=10 --lr=0.5 arc 10xRELU-SoftMax"
    ]


def test_a_task_leaves_unvaried_flags_unset_as_valohai_does(config: Config) -> None:
    from sweeper.config import parse_config
    from sweeper.sweep.space import space_from_task

    text = """
- step:
    name: s
    image: busybox
    command: run {parameters}
    parameters:
      - {name: verbose, type: flag, default: true}
      - {name: color, type: flag, default: true, pass-true-as: --color, pass-false-as: --no-color}
      - {name: level, type: integer, default: 2}
- task:
    name: t
    step: s
    parameters:
      - {name: level, style: multiple, rules: {items: [1, 3]}}
"""
    parsed = parse_config(text)
    space = space_from_task(parsed.get_step("s"), parsed.get_task("t"))
    assert space.fixed == {}
    assert parsed.get_step("s").build_command({**space.fixed, "level": 3}) == ["run --level=3"]
