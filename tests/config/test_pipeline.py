"""Pipelines: nodes, edges, parameters, references and graph order."""

from __future__ import annotations

import pytest

from sweeper.config import Action, Config, Edge, Node, PipelineParameter, parse_config
from sweeper.errors import ConfigError

from .conftest import STEP, errors, problems


def test_nodes(full: Config) -> None:
    pipeline = full.get_pipeline("train-and-evaluate")
    assert pipeline.reuse_executions is True
    train, sweep, evaluate, deploy = pipeline.nodes
    assert (train.name, train.type, train.step, train.on_error) == (
        "train",
        "execution",
        "train",
        "retry",
    )
    assert train.override == {
        "image": "python:3.13",
        "parameters": [{"name": "max-steps", "type": "integer", "default": 1000}],
    }
    (action,) = train.actions
    assert (action.when, action.then) == (("node-complete",), ("stop-pipeline",))
    assert action.if_[0].evaluate({"accuracy": 0.4}, {}) is True
    assert (sweep.type, sweep.task, sweep.step, sweep.on_error, sweep.edge_merge_mode) == (
        "task",
        "sweep",
        None,
        "continue",
        "append",
    )
    assert evaluate.actions == (Action(when=("node-starting",), then=("require-approval",)),)
    assert (deploy.type, deploy.deployment, deploy.endpoints, deploy.aliases) == (
        "deployment",
        "production",
        ("predict",),
        ("latest",),
    )
    assert pipeline.get_node("train") is train
    with pytest.raises(
        ConfigError,
        match='pipeline "train-and-evaluate" has no node "x"; known nodes: train, sweep, evaluate, deploy',
    ):
        pipeline.get_node("x")


def test_edges(full: Config) -> None:
    edges = full.get_pipeline("train-and-evaluate").edges
    assert edges[0] == Edge(
        source_node="train",
        source_type="output",
        source_key="model*",
        target_node="evaluate",
        target_type="input",
        target_key="model",
    )
    assert edges[1].configuration == {"edge-merge-mode": "append"}
    assert (edges[2].source_type, edges[2].target_type, edges[2].target_key) == (
        "metadata",
        "parameter",
        "threshold",
    )
    # The key keeps any further dots.
    assert (edges[3].target_node, edges[3].target_type, edges[3].target_key) == (
        "deploy",
        "file",
        "predict.model",
    )
    assert (
        edges[3].source == "evaluate.output.model*"
        and edges[3].target == "deploy.file.predict.model"
    )


def test_pipeline_parameters(full: Config) -> None:
    assert full.get_pipeline("train-and-evaluate").parameters == (
        PipelineParameter(name="steps", default=500, targets=("train.parameter.max-steps",)),
        PipelineParameter(
            name="threshold",
            default=0.7,
            targets=("evaluate.parameter.threshold",),
            description="Evaluation threshold",
        ),
    )


def test_blueprint_alias(full: Config) -> None:
    assert full.get_pipeline("legacy-alias").nodes == (
        Node(name="only", type="execution", step="evaluate"),
    )


def test_topological_order_and_levels(full: Config) -> None:
    pipeline = full.get_pipeline("train-and-evaluate")
    assert pipeline.topological_order() == ("train", "sweep", "evaluate", "deploy")
    assert pipeline.levels() == (("train", "sweep"), ("evaluate",), ("deploy",))
    assert pipeline.predecessors("evaluate") == ("train", "sweep")
    assert pipeline.successors("train") == ("evaluate",)
    assert [e.source for e in pipeline.edges_into("evaluate")] == [
        "train.output.model*",
        "sweep.output.model*",
        "train.metadata.threshold",
    ]
    assert [e.target for e in pipeline.edges_from("evaluate")] == ["deploy.file.predict.model"]


PIPE = (
    STEP
    + """\
    inputs: [{name: data}]
    parameters: [{name: lr, type: float}]
- pipeline:
    name: p
    nodes:
      - {name: a, type: execution, step: train}
      - {name: b, type: execution, step: train}
      - {name: c, type: execution, step: train}
    edges:
"""
)


def test_declaration_order_breaks_ties() -> None:
    pipeline = parse_config(PIPE + "      - [c.output.x, a.input.data]\n").get_pipeline("p")
    assert pipeline.topological_order() == ("b", "c", "a")


def test_cycle_is_a_warning_that_blocks_a_run() -> None:
    # valohai-yaml accepts a cyclic pipeline; sweeper cannot order it, so it says so.
    text = (
        PIPE
        + "      - [a.output.x, b.input.data]\n      - [b.output.x, c.input.data]\n      - [c.output.x, a.input.data]\n"
    )
    (warning,) = parse_config(text).warnings
    assert str(warning) == (
        'valohai.yaml:8: warning: pipeline "p": the edges form a cycle through nodes a, b, c '
        "(edge [a.output.x, b.input.data] (line 14); edge [b.output.x, c.input.data] (line 15); "
        "edge [c.output.x, a.input.data] (line 16)); sweeper cannot run it"
    )
    assert warning.blocks_run


def test_cycle_raises_from_topological_order() -> None:
    from sweeper.config import Pipeline

    pipeline = Pipeline(
        name="p",
        nodes=(
            Node(name="a", type="execution", step="s"),
            Node(name="b", type="execution", step="s"),
        ),
        edges=(
            Edge(
                source_node="a",
                source_type="output",
                source_key="x",
                target_node="b",
                target_type="input",
                target_key="y",
            ),
            Edge(
                source_node="b",
                source_type="output",
                source_key="x",
                target_node="a",
                target_type="input",
                target_key="y",
            ),
        ),
    )
    with pytest.raises(ConfigError, match='pipeline "p" has a cycle through nodes a, b'):
        pipeline.topological_order()


@pytest.mark.parametrize(
    ("edge", "message"),
    [
        (
            "[z.output.x, b.input.data]",
            'valohai.yaml:14: error: pipeline "p": edge [z.output.x, b.input.data]: source node "z" does not exist; known nodes: a, b, c',
        ),
        (
            "[a.output.x]",
            "valohai.yaml:14: error: edge: a shorthand edge must be a list of two strings, [source, target]",
        ),
        (
            "[a.output.x, b.input.data, c]",
            "valohai.yaml:14: error: edge: a shorthand edge must be a list of two strings, [source, target]",
        ),
        (
            "a.output.x",
            "valohai.yaml:14: error: edge must be a list [source, target] or a mapping with source and target",
        ),
        (
            "{source: a.output.x, target: b.input.data, extra: 1}",
            'valohai.yaml:14: error: edge: unknown key "extra"',
        ),
    ],
)
def test_edge_errors(edge: str, message: str) -> None:
    assert errors(PIPE + f"      - {edge}\n") == [message]


@pytest.mark.parametrize(
    ("edge", "message"),
    [
        (
            "[a.output.x, b.input.dta]",
            'valohai.yaml:14: warning: pipeline "p": edge [a.output.x, b.input.dta]: node "b" (step "train") has no input "dta" (did you mean "data"?)',
        ),
        (
            "[a.metadata.x, b.parameter.nope]",
            'valohai.yaml:14: warning: pipeline "p": edge [a.metadata.x, b.parameter.nope]: node "b" (step "train") has no parameter "nope"; known: lr',
        ),
        (
            "[a.output.x, b.parameter.lr]",
            'valohai.yaml:14: warning: pipeline "p": edge [a.output.x, b.parameter.lr]: a output cannot feed a parameter in sweeper; a input takes output or file or input; a parameter takes parameter or metadata; a environment-variable takes parameter or metadata or environment-variable',
        ),
    ],
)
def test_edges_valohai_accepts_but_sweeper_cannot_run_are_warnings(edge: str, message: str) -> None:
    config = parse_config(PIPE + f"      - {edge}\n")
    assert [str(w) for w in config.warnings] == [message]
    assert all(w.blocks_run for w in config.warnings)


def test_wildcard_edge_sources_match_inputs() -> None:
    text = PIPE + "      - [a.input.dat*, b.input.data]\n      - [a.output.images*, c.input.data]\n"
    assert problems(text) == []


def test_override_inputs_must_exist_in_the_step() -> None:
    text = (
        PIPE.replace(
            "{name: b, type: execution, step: train}",
            "{name: b, type: execution, step: train, override: {inputs: [{name: data, default: s3://x}, {name: extra}]}}",
        )
        + "      - [a.output.x, b.input.data]\n"
    )
    assert errors(text) == [
        'valohai.yaml:11: error: pipeline "p": node "b": override: input "extra" does not exist in step "train"; known: data'
    ]


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ("{name: d, type: execution}", 'node "d": missing required key "step"'),
        ("{name: d, type: task}", 'node "d": a task node needs "step" or "task"'),
        (
            "{name: d, type: deployment, deployment: x, on-error: retry}",
            'node "d": on-error retry is only available for execution nodes',
        ),
        (
            "{name: d, type: task, step: train, task: t}",
            'node "d": a task node takes "step" or "task", not both',
        ),
        ("{name: d, type: deployment}", 'node "d": missing required key "deployment"'),
        (
            "{name: d, type: execution, step: train, edge-merge-mode: merge}",
            'node "d": edge-merge-mode "merge" is not one of: replace, append',
        ),
        (
            "{name: d, type: execution, step: train, override: {parameters: [{name: zz}]}}",
            'pipeline "p": node "d": override: parameter "zz" does not exist in step "train"; known: lr',
        ),
        (
            "{name: d, type: execution, step: train, actions: [{when: node-complete}]}",
            'node "d": action: missing required key "then"',
        ),
        ("{name: d, type: execution, step: train, colour: red}", 'node "d": unknown key "colour"'),
        ("{type: execution, step: train}", 'node (unnamed): missing required key "name"'),
    ],
)
def test_node_errors(node: str, message: str) -> None:
    text = (
        PIPE.replace("      - {name: c, type: execution, step: train}\n", f"      - {node}\n")
        + "      []\n"
    )
    text = text.replace("    edges:\n      []\n", "    edges: []\n")
    assert [e.split(": error: ", 1)[1] for e in errors(text)] == [message]


def test_node_warnings() -> None:
    text = PIPE.replace(
        "{name: c, type: execution, step: train}",
        "{name: c, type: execution, step: train, actions: [{when: node-done, then: dance}]}",
    ).replace("    edges:\n", "    edges: []\n")
    config = parse_config(text)
    assert [str(w).split(": warning: ", 1)[1] for w in config.warnings] == [
        'node "c": action: when "node-done" is not one of node-starting, node-complete, node-error; the action may never run',
        'node "c": action: then "dance" is not one of noop, stop-pipeline, error-pipeline, require-approval; the action may do nothing',
    ]


def test_unknown_override_keys_are_errors_as_for_valohai() -> None:
    text = PIPE.replace(
        "{name: c, type: execution, step: train}",
        "{name: c, type: execution, step: train, override: {colour: red}}",
    ).replace("    edges:\n", "    edges: []\n")
    assert [e.split(": error: ", 1)[1] for e in errors(text)] == [
        'node "c": override: unknown key "colour"'
    ]


@pytest.mark.parametrize(
    ("parameter", "message"),
    [
        (
            "{name: q, targets: [a.parameter.nope]}",
            'pipeline "p": parameter "q": target node "a" (step "train") has no parameter "nope"; known: lr',
        ),
        (
            "{name: q, target: z.parameter.lr}",
            'pipeline "p": parameter "q": target node "z" does not exist; known nodes: a, b, c',
        ),
        (
            "{name: q, target: a.input.data}",
            'pipeline parameter "q": target "a.input.data" must look like node.parameter.name',
        ),
        (
            "{name: q, target: a.parameter.lr, targets: [b.parameter.lr]}",
            'pipeline parameter "q": use either "target" or "targets", not both',
        ),
    ],
)
def test_pipeline_parameter_errors(parameter: str, message: str) -> None:
    text = PIPE.replace("    edges:\n", f"    edges: []\n    parameters: [{parameter}]\n")
    assert [e.split(": error: ", 1)[1] for e in errors(text)] == [message]


def test_missing_edges_key() -> None:
    text = PIPE.replace("    edges:\n", "")
    assert [e.split(": error: ", 1)[1] for e in errors(text)] == [
        'pipeline "p": missing required key "edges" (write "edges: []" if there are none)'
    ]


def test_nodes_pinned_to_another_commit_are_not_checked() -> None:
    text = PIPE.replace(
        "{name: a, type: execution, step: train}",
        "{name: a, type: execution, step: elsewhere, commit: abc123}",
    )
    assert errors(text.replace("    edges:\n", "    edges: []\n")) == []


def test_with_override_merges_into_the_step_definition() -> None:
    from pathlib import Path

    text = (Path(__file__).parent / "compat" / "class4-node-override.yaml").read_text()
    config = parse_config(text)
    step = config.get_step("train")
    (node,) = config.get_pipeline("wide").nodes
    wide = step.with_override(node.override)
    # the list default merges into the `multiple: repeat` parameter, which stays multiple
    assert wide.get_parameter("layer").multiple == "repeat"
    assert wide.get_parameter("lr").max == 1  # keys the override leaves alone stay
    assert wide.image == "python:3.13" and step.image == "python:3.12"
    assert wide.build_command() == ["python train.py --layer=64 --layer=64 --layer=32 --lr=0.1"]
    with pytest.raises(ConfigError, match='parameter "nope" does not exist in step "train"'):
        step.with_override({"parameters": [{"name": "nope", "default": 1}]})
