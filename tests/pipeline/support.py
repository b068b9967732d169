"""A small probe project for pipeline tests, and helpers to run ``sweep pipeline`` in-process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

PROBE_PY = r"""
import argparse, glob, json, os, sys, time
p = argparse.ArgumentParser()
p.add_argument("--x", type=float)
p.add_argument("--sleep", type=float)
p.add_argument("--fail", type=int)
p.add_argument("--marker")
p.add_argument("--threshold", type=float)
a = p.parse_args()
time.sleep(a.sleep)
if a.marker and not os.path.exists(a.marker):
    open(a.marker, "w").close()
    print("the first attempt fails", file=sys.stderr)
    sys.exit(3)
if a.fail:
    print("failing on purpose", file=sys.stderr)
    sys.exit(a.fail)
inputs, outputs = os.environ["VH_INPUTS_DIR"], os.environ["VH_OUTPUTS_DIR"]
with open(os.path.join(outputs, f"model-{a.x}.txt"), "w") as handle:
    handle.write(f"model x={a.x}\n")
got = sorted(os.path.relpath(f, inputs) for f in glob.glob(os.path.join(inputs, "*", "*")))
print(json.dumps({"score": a.x, "threshold": a.threshold, "n_inputs": len(got), "best_x": os.environ.get("BEST_X", "")}))
"""

PROBE_STEP = """
- step:
    name: probe
    image: sweeper-test/python:latest
    command: python ./probe.py {parameters}
    parameters:
      - {name: x, type: float, default: 0.5}
      - {name: sleep, type: float, default: 0}
      - {name: fail, type: integer, default: 0}
      - {name: marker, type: string, optional: true}
      - {name: threshold, type: float, default: 0}
    inputs:
      - {name: model, optional: true}
"""

PIPELINES = (
    PROBE_STEP
    + """
- task:
    name: sweep-x
    step: probe
    type: grid_search
    parameters:
      - name: x
        style: multiple
        rules: {items: [0.2, 0.9, 0.5]}
    optimization-target-metric: score

- pipeline:
    name: task-pipeline
    nodes:
      - {name: tune, type: task, task: sweep-x}
      - {name: consume, type: execution, step: probe}
      - {name: gather, type: execution, step: probe, edge-merge-mode: append}
    edges:
      - [tune.output.model*, consume.input.model]
      - [tune.metadata.score, consume.parameter.threshold]
      - [tune.parameter.x, consume.environment-variable.BEST_X]
      - [tune.output.model*, gather.input.model]

- pipeline:
    name: stop-all
    nodes:
      - {name: fail, type: execution, step: probe, override: {parameters: [{name: fail, type: integer, default: 3}]}}
      - {name: slow, type: execution, step: probe, override: {parameters: [{name: sleep, type: float, default: 60}]}}
      - {name: after, type: execution, step: probe}
    edges:
      - [fail.output.model*, after.input.model]

- pipeline:
    name: stop-next
    nodes:
      - {name: fail, type: execution, step: probe, on-error: stop-next, override: {parameters: [{name: fail, type: integer, default: 3}]}}
      - {name: side, type: execution, step: probe, override: {parameters: [{name: sleep, type: float, default: 1.5}]}}
      - {name: after, type: execution, step: probe}
    edges:
      - [fail.output.model*, after.input.model]

- pipeline:
    name: continue
    nodes:
      - {name: fail, type: execution, step: probe, on-error: continue, override: {parameters: [{name: fail, type: integer, default: 3}]}}
      - {name: after, type: execution, step: probe}
    edges:
      - [fail.dependency.done, after.dependency.done]

- pipeline:
    name: retry
    nodes:
      - {name: flaky, type: execution, step: probe, on-error: retry}
      - {name: after, type: execution, step: probe}
    edges:
      - [flaky.output.model*, after.input.model]

- pipeline:
    name: gate
    parameters:
      - {name: level, targets: [measure.parameter.x], default: 0.8}
    nodes:
      - name: measure
        type: execution
        step: probe
        actions:
          - {when: node-starting, if: parameter.x > 5, then: error-pipeline}
          - {when: node-complete, if: metadata.score < 0.5, then: stop-pipeline}
      - {name: next, type: execution, step: probe}
    edges:
      - [measure.output.model*, next.input.model]

- pipeline:
    name: bad-metadata
    nodes:
      - {name: a, type: execution, step: probe}
      - {name: b, type: execution, step: probe}
    edges:
      - [a.metadata.nope, b.parameter.threshold]

- pipeline:
    name: parallel
    nodes:
      - {name: left, type: execution, step: probe, override: {parameters: [{name: sleep, type: float, default: 1.5}]}}
      - {name: right, type: execution, step: probe, override: {parameters: [{name: sleep, type: float, default: 1.5}]}}
    edges: []

- pipeline:
    name: cached
    reuse-executions: true
    nodes:
      - {name: only, type: execution, step: probe}
    edges: []

- pipeline:
    name: slow-chain
    nodes:
      - {name: first, type: execution, step: probe}
      - {name: second, type: execution, step: probe, override: {parameters: [{name: sleep, type: float, default: 4}]}}
      - {name: third, type: execution, step: probe}
    edges:
      - [first.output.model*, second.input.model]
      - [second.output.model*, third.input.model]
"""
)


def pipeline_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``sweep pipeline ARGS`` in this process (sharing its Ray); (exit code, stdout, stderr)."""
    from sweeper.cli.commands_pipeline import main

    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(
    project: Path, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, dict[str, Any]]:
    """``sweep pipeline run ARGS --runtime local --json`` in ``project``; (exit code, summary)."""
    code, out, err = pipeline_main(
        ["run", *args, "--runtime", "local", "--json", "-f", str(project / "valohai.yaml")], capsys
    )
    assert out.strip(), f"no JSON on stdout (exit {code}):\n{err}"
    return code, json.loads(out)


def record(project: Path, execution_id: str) -> dict[str, Any]:
    """An execution's record from the project's store."""
    path = project / ".sweeper" / "executions" / execution_id / "execution.json"
    return json.loads(path.read_text())


def node_records(project: Path, run_id: str, node: str) -> list[dict[str, Any]]:
    """Every execution record of one node of one pipeline run, in start order."""
    found = []
    for path in (project / ".sweeper" / "executions").glob("*/execution.json"):
        data = json.loads(path.read_text())
        if data.get("pipeline_run_id") == run_id and data.get("node") == node:
            found.append(data)
    return sorted(found, key=lambda r: r["counter"])
