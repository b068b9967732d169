"""The pipeline graph without Ray: checks, edge resolution, task variants, best execution."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from sweeper.config import Edge, parse_config
from sweeper.pipeline.graph import (
    NodeOutcome,
    PipelineError,
    PipelineGraph,
    merge_inputs,
    resolve_edges,
)
from sweeper.pipeline.tasks import best_record, task_variants
from sweeper.record import ExecutionRecord
from tests.pipeline.support import PIPELINES, PROBE_STEP

CONFIG = parse_config(PIPELINES)


def graph(name: str) -> PipelineGraph:
    return PipelineGraph.build(CONFIG, name)


def with_edges(name: str, *edges: tuple[str, str]) -> Any:
    """CONFIG with pipeline ``name``'s edges replaced (bypassing the config layer's own checks)."""
    pipeline = CONFIG.pipelines[name]
    parsed = []
    for line, (source, target) in enumerate(edges, start=100):
        s, t = source.split(".", 2), target.split(".", 2)
        parsed.append(
            Edge(
                source_node=s[0],
                source_type=s[1],
                source_key=s[2],
                target_node=t[0],
                target_type=t[1],
                target_key=t[2],
                line=line,
            )
        )
    changed = dataclasses.replace(pipeline, edges=tuple(parsed))
    return dataclasses.replace(CONFIG, pipelines={name: changed})


def test_order_and_structure() -> None:
    g = graph("slow-chain")
    assert g.order == ("first", "second", "third")
    assert g.predecessors("third") == ("second",)
    assert g.descendants("first") == {"second", "third"}


def test_cycle_names_nodes_and_edges() -> None:
    config = with_edges(
        "slow-chain",
        ("first.output.m*", "second.input.model"),
        ("second.output.m*", "first.input.model"),
    )
    with pytest.raises(PipelineError, match="cycle through nodes first, second") as info:
        PipelineGraph.build(config, "slow-chain")
    message = str(info.value)
    assert "[second.output.m*, first.input.model] (line 101)" in message


@pytest.mark.parametrize(
    ("edge", "expected"),
    [
        (("first.output.m*", "ghost.input.model"), 'target node "ghost" does not exist'),
        (
            ("first.output.m*", "second.input.nope"),
            'node "second" (step "probe") has no input "nope"; known: model',
        ),
        (
            ("first.metadata.acc", "second.parameter.nope"),
            'node "second" (step "probe") has no parameter "nope"',
        ),
        (("first.output.m*", "second.parameter.x"), "a output cannot feed a parameter"),
        (
            ("first.parameter.nope", "second.parameter.x"),
            'node "first" (step "probe") has no parameter "nope"',
        ),
    ],
)
def test_bad_edges_name_node_and_edge(edge: tuple[str, str], expected: str) -> None:
    with pytest.raises(PipelineError, match=re.escape(expected)) as info:
        PipelineGraph.build(with_edges("slow-chain", edge), "slow-chain")
    message = str(info.value)
    assert message.startswith(
        f"valohai.yaml:100: {'error' if 'ghost' in edge[1] else 'warning'}: "
        f'pipeline "slow-chain": edge [{edge[0]}, {edge[1]}]: '
    )


def test_lint_and_run_give_the_same_verdict_and_message() -> None:
    text = (
        PROBE_STEP
        + """
- pipeline:
    name: p
    nodes:
      - {name: a, type: execution, step: probe}
      - {name: b, type: execution, step: probe, commit: abc}
    edges:
      - [a.output.m*, a.input.model]
      - [a.metadata.acc, b.parameter.x]
"""
    )
    from sweeper.config import lint_text

    blocking = [p for p in lint_text(text) if p.level == "error" or p.blocks_run]
    assert len(blocking) == 2
    message = "\n".join(str(p) for p in blocking)
    with pytest.raises(PipelineError, match=f"^{re.escape(message)}$"):
        PipelineGraph.build(parse_config(text), "p")


def test_require_approval_is_refused() -> None:
    text = (
        PROBE_STEP
        + """
- pipeline:
    name: approve
    nodes:
      - name: a
        type: execution
        step: probe
        actions:
          - {when: node-complete, then: require-approval}
    edges: []
"""
    )
    with pytest.raises(
        PipelineError, match=r'node "a": the action then: require-approval is not supported'
    ):
        PipelineGraph.build(parse_config(text), "approve")


def test_unknown_pipeline_and_parameter_names() -> None:
    with pytest.raises(
        PipelineError, match=r'unknown pipeline "nope"; known pipelines: task-pipeline'
    ):
        PipelineGraph.build(CONFIG, "nope")
    with pytest.raises(PipelineError, match=r'no pipeline parameter "levle"'):
        graph("gate").parameter_values({"levle": ["1"]})
    with pytest.raises(PipelineError, match=r'step "probe" has no parameter "y"'):
        graph("gate").parameter_values({"measure.y": ["1"]})
    with pytest.raises(PipelineError, match=r'-p measure.x: .*"abc"'):
        graph("gate").parameter_values({"measure.x": ["abc"]})


def test_parameter_precedence() -> None:
    g = graph("gate")
    assert g.parameter_values({})["measure"] == {"x": 0.8}
    assert g.parameter_values({"level": ["0.3"]})["measure"] == {"x": 0.3}
    assert g.parameter_values({"level": ["0.3"], "measure.x": ["0.1"]})["measure"] == {"x": 0.1}


def test_required_input_without_source_is_refused() -> None:
    text = (
        PROBE_STEP.replace("{name: model, optional: true}", "{name: model}")
        + """
- pipeline:
    name: p
    nodes:
      - {name: a, type: execution, step: probe}
    edges: []
"""
    )
    g = PipelineGraph.build(parse_config(text), "p")
    with pytest.raises(PipelineError, match=r'node "a": input "model" of step "probe" is required'):
        g.check_required_inputs({"a": {}})
    g.check_required_inputs({"a": {"model": ["x.txt"]}})


def rec(
    execution_id: str,
    score: float,
    outputs: list[str],
    status: str = "complete",
    inputs: list[dict[str, Any]] | None = None,
) -> ExecutionRecord:
    return ExecutionRecord.from_dict(
        {
            "id": execution_id,
            "status": status,
            "metrics": {"score": score},
            "parameters": {"x": score},
            "outputs": [{"path": p, "sha256": "0" * 64} for p in outputs],
            "inputs": inputs or [],
        }
    )


def test_edges_from_a_task_carry_the_best_or_all() -> None:
    g = graph("task-pipeline")
    records = [
        rec("e1", 0.2, ["model-0.2.txt"]),
        rec("e2", 0.9, ["model-0.9.txt", "other.txt"]),
        rec("e3", 0.5, ["model-0.5.txt"]),
    ]
    best = best_record(g.plans["tune"], records)
    assert best is not None and best.id == "e2"
    outcome = NodeOutcome(records, best)
    consume = resolve_edges(g, "consume", {"tune": outcome})
    assert consume.inputs == {"model": ["execution://e2/outputs/model-0.9.txt"]}
    assert consume.parameters == {"threshold": 0.9}
    assert consume.environment == {"BEST_X": "0.9"}
    gather = resolve_edges(g, "gather", {"tune": outcome})
    assert gather.inputs["model"] == [
        f"execution://{i}/outputs/model-{x}.txt" for i, x in (("e1", 0.2), ("e2", 0.9), ("e3", 0.5))
    ]
    assert (
        merge_inputs(g.plans["gather"], {"model": ["seed.txt"]}, gather.inputs)["model"][0]
        == "seed.txt"
    )
    assert (
        merge_inputs(g.plans["consume"], {"model": ["seed.txt"]}, consume.inputs)["model"]
        == consume.inputs["model"]
    )


def test_missing_metadata_and_output_name_the_edge() -> None:
    g = graph("bad-metadata")
    edge = re.escape('node "b": edge [a.metadata.nope, b.parameter.threshold]')
    with pytest.raises(PipelineError, match=edge) as info:
        resolve_edges(g, "b", {"a": NodeOutcome([rec("e1", 0.1, [])])})
    assert 'never printed the metadata key "nope" (it printed: score)' in str(info.value)
    g = graph("slow-chain")
    with pytest.raises(
        PipelineError,
        match=r'execution e1 of node "first" has no output matching "model\*" \(its outputs: log.txt\)',
    ):
        resolve_edges(g, "second", {"first": NodeOutcome([rec("e1", 0.1, ["log.txt"])])})


def test_task_variants_grid_with_pipeline_axes() -> None:
    g = graph("task-pipeline")
    plan = g.plans["tune"]
    assert task_variants(plan, {}) == [{"x": 0.2}, {"x": 0.9}, {"x": 0.5}]
    assert task_variants(plan, {"x": 0.3}) == [{"x": 0.3}]
    both = task_variants(plan, {"sleep": [0.0, 1.0]})
    assert len(both) == 6 and {"x": 0.9, "sleep": 1.0} in both


def test_input_to_input_edge_passes_the_files_the_source_got() -> None:
    config = with_edges("slow-chain", ("first.input.model", "second.input.model"))
    g = PipelineGraph.build(config, "slow-chain")
    source = rec(
        "e1",
        0.1,
        [],
        inputs=[
            {"name": "model", "uri": "execution://e0/outputs/m.txt", "sha256": "1" * 64},
            {"name": "other", "uri": "data/x.csv", "sha256": "2" * 64},
        ],
    )
    values = resolve_edges(g, "second", {"first": NodeOutcome([source])})
    assert values.inputs == {"model": ["execution://e0/outputs/m.txt"]}
