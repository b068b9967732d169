"""Every field of a real valohai.yaml is read into the right typed, immutable object."""

from __future__ import annotations

import dataclasses

import pytest

from sweeper.config import (
    Config,
    EnvironmentVariable,
    Input,
    Mount,
    Output,
    Parameter,
    parse_config,
)
from sweeper.errors import ConfigError


def test_top_level_items_are_ordered_by_name(full: Config) -> None:
    assert list(full.steps) == ["train", "evaluate"]
    assert list(full.tasks) == ["sweep", "manual"]
    assert list(full.pipelines) == ["train-and-evaluate", "legacy-alias"]


def test_what_sweeper_cannot_run_is_a_warning(full: Config) -> None:
    # The endpoint is valid; the pipeline's approval is accepted by Valohai, so it is a
    # warning, not an error (its deployment node runs: no warning); sweeper's own extensions
    # are accepted with a warning that Valohai refuses them.
    assert [str(w).split(": warning: ")[1] for w in full.warnings] == [
        'input "images": edge-merge-mode on an input is a sweeper extension: the Valohai '
        "platform refuses this key (set it on the pipeline node)",
        'environment variable "API_TOKEN": secret is a sweeper extension: the Valohai platform '
        "refuses this key",
        'pipeline "train-and-evaluate": node "evaluate": the action then: require-approval is '
        "not supported by sweeper (there is no one to approve); use stop-pipeline or remove "
        "the action",
    ]


def test_step_fields(full: Config) -> None:
    step = full.get_step("train")
    assert step.image == "python:3.12"
    assert step.command == ("pip install -r requirements.txt", "python train.py {parameters}")
    assert step.description == "Train the model"
    assert step.icon == "https://example.com/icon.png"
    assert step.category == "Training"
    assert step.source_path == "train.py"
    assert step.upload_store == "my-store"
    assert step.environment == "aws-eu-west-1-p3-2xlarge"
    assert step.runtime_config_preset == "my-preset"
    assert step.autorestart is True
    assert step.time_limit == 5400
    assert step.no_output_timeout == 600
    assert step.environment_variable_groups == ("secret-group",)
    assert step.cache_volumes == ("/root/.cache/pip",)
    assert (
        step.stop_condition is not None and step.stop_condition.text == "metadata.accuracy > 0.95"
    )
    assert step.outputs == (Output(name="model", description="The trained model"),)


def test_resources(full: Config) -> None:
    resources = full.get_step("train").resources
    assert (resources.cpu_min, resources.cpu_max) == (0.5, 4.0)
    assert (resources.memory_min, resources.memory_max) == (1024, 8192)
    assert dict(resources.devices) == {"nvidia.com/gpu": 1}
    assert resources.gpus == 1.0
    assert full.get_step("evaluate").resources.gpus == 0.0


def test_parameters(full: Config) -> None:
    step = full.get_step("train")
    assert [p.name for p in step.parameters] == [
        "max-steps",
        "learning-rate",
        "architecture",
        "optimizer",
        "augment",
        "layers",
        "tag",
    ]
    assert step.get_parameter("max-steps") == Parameter(
        name="max-steps",
        type="integer",
        default=300,
        min=1,
        max=10000,
        description="Number of steps",
        category="Training",
    )
    lr = step.get_parameter("learning-rate")
    assert (lr.type, lr.pass_as, lr.default, lr.min, lr.max) == (
        "float",
        "--lr={v}",
        0.001,
        0.00001,
        1,
    )
    assert step.get_parameter("architecture").optional is True
    assert step.get_parameter("optimizer").choices == ("adam", "sgd")
    assert step.get_parameter("optimizer").widget == "dropdown"
    flag = step.get_parameter("augment")
    assert (flag.type, flag.optional, flag.pass_true_as, flag.pass_false_as) == (
        "flag",
        True,
        "--augment=yes",
        "--augment=no",
    )
    layers = step.get_parameter("layers")
    assert (layers.multiple, layers.multiple_separator, layers.default) == (
        "separate",
        ":",
        (64, 32),
    )
    tag = step.get_parameter("tag")
    assert (tag.type, tag.multiple, tag.multiple_separator) == ("string", "repeat", ",")
    assert tag.widget == {"type": "text", "settings": {"rows": 2}}


def test_inputs(full: Config) -> None:
    step = full.get_step("train")
    assert step.inputs == (
        Input(
            name="dataset",
            default=("s3://bucket/data/train.csv",),
            description="Training data",
            filename="train.csv",
        ),
        Input(
            name="images",
            default=("s3://bucket/images/*.jpg", "s3://bucket/more/*.jpg"),
            keep_directories="suffix",
            download="on-demand",
            optional=True,
            edge_merge_mode="append",
        ),
        Input(name="labels", keep_directories="full"),
    )
    assert full.get_step("evaluate").get_input("model").default == ()


def test_mounts_and_environment(full: Config) -> None:
    step = full.get_step("train")
    assert step.mounts == (
        Mount(source="/host/data", destination="/data"),
        Mount(
            source="/host/cache",
            destination="/cache",
            readonly=True,
            type="nfs",
            options={"server": "10.0.0.1"},
        ),
    )
    assert step.environment_variables == (
        EnvironmentVariable(name="WANDB_MODE", default="disabled", description="Disable W&B"),
        EnvironmentVariable(name="API_TOKEN", optional=False, secret=True),
        EnvironmentVariable(name="THREADS", default="4"),
    )


def test_objects_are_immutable(full: Config) -> None:
    step = full.get_step("train")
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'name'"):
        step.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError, match="does not support item assignment"):
        full.steps["x"] = step  # type: ignore[index]
    with pytest.raises(TypeError, match="does not support item assignment"):
        step.resources.devices["nvidia.com/gpu"] = 2  # type: ignore[index]


def test_unknown_names_list_the_known_ones(full: Config) -> None:
    with pytest.raises(ConfigError, match=r'^unknown step "nope"; known steps: train, evaluate$'):
        full.get_step("nope")
    with pytest.raises(ConfigError, match=r'^unknown task "nope"; known tasks: sweep, manual$'):
        full.get_task("nope")
    with pytest.raises(
        ConfigError,
        match=r'^unknown pipeline "x"; known pipelines: train-and-evaluate, legacy-alias$',
    ):
        full.get_pipeline("x")
    with pytest.raises(
        ConfigError, match='step "train" has no parameter "x"; known parameters: max-steps, '
    ):
        full.get_step("train").get_parameter("x")


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("1h 30m", 5400),
        ("1h30m5s", 5405),
        ("2 hours", 7200),
        ("90", 90),
        ("1.5m", 90),
        ("1d", 86400),
        ("1w", 604800),
        ("10 min, 5 sec", 605),
        (3600, 3600),
        (0, None),
        ("", None),
    ],
)
def test_durations(written: object, seconds: int | None) -> None:
    value = f'"{written}"' if isinstance(written, str) else written
    config = parse_config(
        f"- step: {{name: s, image: i, command: c, time-limit: {value}, no-output-timeout: {value}}}"
    )
    assert config.get_step("s").time_limit == seconds
    assert config.get_step("s").no_output_timeout == seconds


def test_single_string_command_is_one_line() -> None:
    step = parse_config("- step: {name: s, image: i, command: echo hi}").get_step("s")
    assert step.command == ("echo hi",)
    assert step.serialize()["command"] == "echo hi"


def test_yaml_anchors_and_merge_keys_are_supported() -> None:
    config = parse_config(
        """
- step: &base
    name: a
    image: python:3.12
    command: echo a
    environment-variables: &vars
      - name: X
        default: "1"
- step:
    <<: *base
    name: b
    environment-variables: *vars
"""
    )
    assert config.get_step("b").image == "python:3.12"
    assert config.get_step("b").command == ("echo a",)
    assert config.get_step("b").environment_variables == config.get_step("a").environment_variables


def test_empty_top_level_list_is_a_valid_config() -> None:
    assert parse_config("[]").steps == {}
