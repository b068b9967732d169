"""serialize() gives back valohai.yaml data that parses to an equal configuration."""

from __future__ import annotations

import pytest
import yaml

from sweeper.config import Config, load_config, parse_config

from .conftest import DATA


@pytest.mark.parametrize("name", ["full.yaml", "rendering.yaml"])
def test_round_trip(name: str) -> None:
    config = load_config(DATA / name)
    text = yaml.safe_dump(config.serialize(), sort_keys=False)
    again = parse_config(text)
    assert again == config
    assert again.serialize() == config.serialize()
    # Every object survives, not just the mappings.
    for step_name, step in config.steps.items():
        assert again.get_step(step_name) == step
        assert again.get_step(step_name).build_command() == step.build_command()


def test_serialized_step_uses_valohai_keys(full: Config) -> None:
    data = full.get_step("train").serialize()
    assert list(data)[:3] == ["name", "image", "command"]
    assert data["time-limit"] == 5400
    assert data["resources"] == {
        "cpu": {"min": 0.5, "max": 4},
        "memory": {"min": 1024, "max": 8192},
        "devices": {"nvidia.com/gpu": 1},
    }
    assert data["inputs"][1] == {
        "name": "images",
        "default": ["s3://bucket/images/*.jpg", "s3://bucket/more/*.jpg"],
        "optional": True,
        "keep-directories": "suffix",
        "download": "on-demand",
        "edge-merge-mode": "append",
    }
    assert data["mounts"] == [
        "/host/data:/data",
        {
            "source": "/host/cache",
            "destination": "/cache",
            "readonly": True,
            "type": "nfs",
            "options": {"server": "10.0.0.1"},
        },
    ]
    assert data["stop-condition"] == "metadata.accuracy > 0.95"


def test_serialized_pipeline_keeps_edge_shapes(full: Config) -> None:
    data = full.get_pipeline("train-and-evaluate").serialize()
    assert data["edges"][0] == ["train.output.model*", "evaluate.input.model"]
    assert data["edges"][1] == {
        "source": "sweep.output.model*",
        "target": "evaluate.input.model",
        "configuration": {"edge-merge-mode": "append"},
    }
    assert data["reuse-executions"] is True


def test_serialize_leaves_out_defaults() -> None:
    config = parse_config(
        "- step: {name: s, image: i, command: c, parameters: [{name: p}], inputs: [{name: x}]}"
    )
    assert config.serialize() == [
        {
            "step": {
                "name": "s",
                "image": "i",
                "command": "c",
                "parameters": [{"name": "p", "type": "string"}],
                "inputs": [{"name": "x"}],
            }
        }
    ]
