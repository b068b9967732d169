"""The search-space and objective options of `sweep STEP`, through the real command line.

Each test runs `sweep ...` in a subprocess against a real Ray head, with real Optuna and the
real Parquet store, and checks what a user relies on: the values drawn lie in the declared
range, on the declared scale and with the declared type, in what the step received as well
as in what the store and the study recorded; the precedence of `-p` over `--task` over the
step; the samplers named are the ones that ran; a sweep without a metric still runs.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from sweeper.store import Store
from sweeper.sweep.study import load_study
from tests.conftest import ray_head_cluster, sweep_cli

# each `sweep` below gets up to 600 s: the test's limit is above that
pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(900)]

#: Prints what it was given: its argv (as the command rendered it) and a loss from ``x``.
ECHO_PY = """
import json, sys
args = dict(a[2:].split("=", 1) if "=" in a else (a[2:], "true") for a in sys.argv[1:])
x = float(args.get("x", 0.5))
print(json.dumps({"loss": (x - 0.3) ** 2, "score": x, "argv": " ".join(sys.argv[1:])}))
"""


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    """A real Ray head (2 CPUs) the sweeps join through RAY_ADDRESS: ~1 s, not ~10 s, each."""
    with ray_head_cluster(2) as address:
        yield address


def sweep(project: Path, head: str, *args: str) -> Any:
    """Run ``sweep ARGS`` in ``project`` on the head; the completed process."""
    return sweep_cli(*args, cwd=project, env={"RAY_ADDRESS": head}, timeout=600)


def sweep_json(project: Path, head: str, *args: str) -> dict[str, Any]:
    """Run ``sweep ARGS --json --runtime local``; its summary (it must exit 0)."""
    proc = sweep(project, head, *args, "--runtime", "local", "--json")
    assert proc.returncode == 0, proc.stderr
    summary: dict[str, Any] = json.loads(proc.stdout)
    summary["stderr"] = proc.stderr
    return summary


def records(project: Path, sweep_id: str) -> list[dict[str, Any]]:
    """The execution records of a sweep, in trial order."""
    store = Store.open(project / ".sweeper")
    ids = [
        r["execution_id"]
        for r in store.read_dataset("executions").to_pylist()
        if r["sweep_id"] == sweep_id
    ]
    found = [store.read_json(f"{store.execution_dir(i)}/execution.json") for i in ids]
    return sorted(found, key=lambda r: r["trial_number"])


def study(project: Path, sweep_id: str) -> optuna.Study:
    """The sweep's Optuna study, from its journal in the store."""
    return load_study(Store.open(project / ".sweeper"), sweep_id)


def argv(record: dict[str, Any]) -> dict[str, str]:
    """The ``--name=value`` arguments the step was started with, as it printed them."""
    words = shlex.split(record["metrics"]["argv"])
    return dict(w[2:].split("=", 1) if "=" in w else (w[2:], "true") for w in words)


SPACE_STEP = """
- step:
    name: echo
    image: sweeper-test/python:latest
    command: python3 ./echo.py {parameters}
    parameters:
      - {name: a, type: float, default: 0.01}
      - {name: b, type: float, default: 0.2}
      - {name: c, type: integer, default: 2}
      - {name: d, type: integer, default: 16}
      - {name: e, type: float, default: 0.5}
      - {name: f, type: string, default: relu}
      - {name: g, type: integer, default: 1}
"""


def test_cli_space_syntax_draws_in_range_scale_and_type(make_project, ray_head: str) -> None:
    project = make_project(SPACE_STEP, {"echo.py": ECHO_PY})
    summary = sweep_json(
        project,
        ray_head,
        "echo",
        "--trials",
        "8",
        "--sampler",
        "random",
        "--seed",
        "5",
        "--metric",
        "score",
        "-p",
        "a=log:1e-4..1",
        "-p",
        "b=0.1..0.5",
        "-p",
        "c=int:1..4",
        "-p",
        "d=logint:8..512",
        "-p",
        "e=float:0..1:0.25",
        "-p",
        "f=relu,tanh",
        "-p",
        "g=7",
    )
    # the resolved space, as the user is shown it before the first trial
    for described in (
        "a log float 0.0001..1",
        "b float 0.1..0.5",
        "c int 1..4",
        "d log int 8..512",
        "e float 0..1 step 0.25",
        "f one of relu, tanh",
        "g fixed 7",
    ):
        assert described in summary["stderr"], summary["stderr"]
    # what Optuna sampled from: the declared range and scale
    distributions = study(project, summary["sweep_id"]).trials[0].distributions
    assert distributions["a"] == FloatDistribution(1e-4, 1.0, log=True)
    assert distributions["b"] == FloatDistribution(0.1, 0.5)
    assert distributions["c"] == IntDistribution(1, 4)
    assert distributions["d"] == IntDistribution(8, 512, log=True)
    assert distributions["e"] == FloatDistribution(0.0, 1.0, step=0.25)
    assert distributions["f"] == CategoricalDistribution(["relu", "tanh"])
    assert "g" not in distributions  # fixed: not searched
    rows = records(project, summary["sweep_id"])
    assert len(rows) == 8 and {r["status"] for r in rows} == {"complete"}
    for row in rows:
        p, given = row["parameters"], argv(row)
        assert isinstance(p["a"], float) and 1e-4 <= p["a"] <= 1
        assert isinstance(p["b"], float) and 0.1 <= p["b"] <= 0.5
        assert type(p["c"]) is int and 1 <= p["c"] <= 4
        assert type(p["d"]) is int and 8 <= p["d"] <= 512
        assert p["e"] in (0.0, 0.25, 0.5, 0.75, 1.0)
        assert p["f"] in ("relu", "tanh")
        assert p["g"] == 7
        # the step got the same values, integers written as integers
        assert float(given["a"]) == p["a"] and given["c"] == str(p["c"])
        assert given["d"] == str(p["d"]) and given["g"] == "7" and given["f"] == p["f"]
    # eight log-uniform draws over four decades do not all land in the top one
    assert min(r["parameters"]["a"] for r in rows) < 0.1


DEFAULT_STEP = """
- step:
    name: echo
    image: sweeper-test/python:latest
    command: python3 ./echo.py {parameters}
    parameters:
      - {name: x, type: float, min: 0.0001, max: 1.0, default: 0.01}
      - {name: dropout, type: float, min: 0.0, max: 0.5, default: 0.1}
      - {name: units, type: integer, min: 2, max: 64, default: 16}
      - {name: width, type: integer, min: 1, max: 1000, default: 10}
      - {name: act, type: string, default: relu, choices: [relu, tanh, gelu]}
      - {name: shuffle, type: flag, default: false}
      - {name: epochs, type: integer, default: 3}
      - {name: tag, type: string, default: baseline}
"""


def test_without_p_the_step_declares_the_space(make_project, ray_head: str) -> None:
    project = make_project(DEFAULT_STEP, {"echo.py": ECHO_PY})
    summary = sweep_json(
        project, ray_head, "echo", "--trials", "6", "--sampler", "random", "--metric", "loss"
    )
    distributions = study(project, summary["sweep_id"]).trials[0].distributions
    # min > 0 and max/min >= 100: log scale; otherwise linear
    assert distributions["x"] == FloatDistribution(0.0001, 1.0, log=True)
    assert distributions["dropout"] == FloatDistribution(0.0, 0.5)
    assert distributions["units"] == IntDistribution(2, 64)
    assert distributions["width"] == IntDistribution(1, 1000, log=True)
    assert distributions["act"] == CategoricalDistribution(["relu", "tanh", "gelu"])
    assert distributions["shuffle"] == CategoricalDistribution([True, False])
    assert "epochs" not in distributions and "tag" not in distributions
    for row in records(project, summary["sweep_id"]):
        p, given = row["parameters"], argv(row)
        assert 0.0001 <= p["x"] <= 1 and 0 <= p["dropout"] <= 0.5
        assert type(p["units"]) is int and 2 <= p["units"] <= 64
        assert type(p["width"]) is int and 1 <= p["width"] <= 1000
        assert p["act"] in ("relu", "tanh", "gelu") and given["act"] == p["act"]
        assert isinstance(p["shuffle"], bool)
        assert ("shuffle" in given) == p["shuffle"]  # a flag is passed only when true
        assert p["epochs"] == 3 and given["epochs"] == "3" and given["tag"] == "baseline"


TASK_STEP = """
- step:
    name: echo
    image: sweeper-test/python:latest
    command: python3 ./echo.py {parameters}
    parameters:
      - {name: x, type: float, min: 0, max: 1, default: 0.5}
      - {name: y, type: float, min: 0, max: 1, default: 0.5}
      - {name: z, type: float, min: 0, max: 1, default: 0.25}
- task:
    name: small-grid
    step: echo
    type: grid_search
    optimization-target-metric: loss
    parameters:
      - {name: x, style: multiple, rules: {items: [0.1, 0.2]}}
      - {name: y, style: multiple, rules: {items: [0.6, 0.7]}}
"""


def test_cli_p_wins_over_task_which_wins_over_the_step(make_project, ray_head: str) -> None:
    project = make_project(TASK_STEP, {"echo.py": ECHO_PY})
    summary = sweep_json(project, ray_head, "echo", "--task", "small-grid", "-p", "y=0.9")
    rows = records(project, summary["sweep_id"])
    # the task's grid over x (2 points: the trial count defaults to the grid's size)
    assert sorted(r["parameters"]["x"] for r in rows) == [0.1, 0.2]
    # y: -p wins over the task's items; z: not in the task, stays at the step's default
    # instead of the step's own 0..1 range
    assert {r["parameters"]["y"] for r in rows} == {0.9}
    assert {r["parameters"]["z"] for r in rows} == {0.25}
    assert {argv(r)["y"] for r in rows} == {"0.9"}
    # the task also named the metric: the best is the lowest loss
    assert summary["best"]["value"] == min(r["metrics"]["loss"] for r in rows)


OBJECTIVE_STEP = """
- step:
    name: echo
    image: sweeper-test/python:latest
    command: python3 ./echo.py {parameters}
    parameters:
      - {name: x, type: float, min: 0, max: 1, default: 0.5}
- task:
    name: grid
    step: echo
    type: grid_search
    parameters:
      - {name: x, style: multiple, rules: {items: [0.1, 0.3, 0.9]}}
"""

RANKED_SIBLING = """
- task:
    name: tuned
    step: echo
    type: bayesian_tpe
    execution-count: 4
    optimization-target-metric: score
    parameters:
      - {name: x, style: random, rules: {min: 0, max: 1, count: 4}}
"""


def test_a_grid_task_without_metric_ranks_by_its_siblings(make_project, ray_head: str) -> None:
    project = make_project(OBJECTIVE_STEP + RANKED_SIBLING, {"echo.py": ECHO_PY})
    summary = sweep_json(project, ray_head, "echo", "--task", "grid")
    assert summary["trials"]["complete"] == 3
    # score is the metric of task "tuned"; no loss/error in its name: maximized
    assert summary["best"]["parameters"] == {"x": 0.9}
    assert summary["best"]["values"] == {"score": 0.9}
    note = [line for line in summary["stderr"].splitlines() if "optimization-target-metric" in line]
    assert len(note) == 1 and "score" in note[0] and "tuned" in note[0], summary["stderr"]


def test_a_grid_task_without_any_metric_runs_unranked(make_project, ray_head: str) -> None:
    project = make_project(OBJECTIVE_STEP, {"echo.py": ECHO_PY})
    summary = sweep_json(project, ray_head, "echo", "--task", "grid")
    assert summary["trials"] == {"complete": 3, "error": 0, "pruned": 0, "running": 0}
    assert summary["best"] is None
    said = [line for line in summary["stderr"].splitlines() if "unranked" in line]
    assert len(said) == 1 and said[0].startswith("sweep: no --metric"), summary["stderr"]
    assert sorted(r["parameters"]["x"] for r in records(project, summary["sweep_id"])) == [
        0.1,
        0.3,
        0.9,
    ]
    status = json.loads(sweep_cli("status", "--json", cwd=project, check=True).stdout)
    assert status["best"] is None and status["trials"]["complete"] == 3
    # the summary for people lists every trial, and no best
    proc = sweep(project, ray_head, "echo", "--task", "grid", "--runtime", "local")
    assert proc.returncode == 0, proc.stderr
    assert "unranked" in proc.stdout and "best" not in proc.stdout
    assert all(f"│ {x} " in proc.stdout for x in ("0.1", "0.3", "0.9")), proc.stdout


@pytest.mark.parametrize(
    "args, named",
    [
        (["--trials", "2"], "tpe sampler"),
        (["--trials", "2", "--sampler", "cmaes"], "cmaes sampler"),
        (["--task", "grid", "--pruner", "median"], "median pruner"),
    ],
)
def test_a_sampler_or_pruner_that_needs_a_metric_says_so(
    make_project, ray_head: str, args: list[str], named: str
) -> None:
    project = make_project(OBJECTIVE_STEP, {"echo.py": ECHO_PY})
    proc = sweep(project, ray_head, "echo", "--runtime", "local", *args)
    assert proc.returncode != 0
    assert proc.stderr.startswith("sweep: error: ") and "--metric" in proc.stderr
    assert named in proc.stderr and "Traceback" not in proc.stderr
    assert not (project / ".sweeper" / "sweeps").exists() or not any(
        (project / ".sweeper" / "sweeps").iterdir()
    )


SAMPLER_STEP = """
- step:
    name: echo
    image: sweeper-test/python:latest
    command: python3 ./echo.py {parameters}
    parameters:
      - {name: x, type: float, min: 0, max: 1, default: 0.5}
      - {name: y, type: float, min: 0, max: 1, default: 0.5}
"""


def _sampler_sweep(project: Path, head: str, sampler: str) -> dict[str, Any]:
    return sweep_json(
        project,
        head,
        "echo",
        "--sampler",
        sampler,
        "--trials",
        "5",
        "--parallel",
        "1",
        "--seed",
        "0",
        "--metric",
        "loss",
    )


def test_cmaes_sampler_runs_the_sweep(make_project, ray_head: str) -> None:
    project = make_project(SAMPLER_STEP, {"echo.py": ECHO_PY})
    if importlib.util.find_spec("cmaes") is None:  # a dependency: only a broken install lacks it
        proc = sweep(
            project, ray_head, "echo", "--sampler", "cmaes", "--trials", "2", "--metric", "x"
        )
        assert proc.returncode != 0
        assert proc.stderr.strip().splitlines() == [
            "sweep: error: the cmaes sampler needs the cmaes package: pip install cmaes, or use tpe"
        ]
        pytest.fail("the cmaes package is missing: `pip install -e .` installs it")
    summary = _sampler_sweep(project, ray_head, "cmaes")
    assert summary["trials"]["complete"] == 5
    trials = study(project, summary["sweep_id"]).trials
    # after the first (independent) trial, CMA-ES itself proposed every point
    for trial in trials[1:]:
        assert any(k.endswith("generation") and "cma" in k for k in trial.system_attrs), trial
    saved = Store.open(project / ".sweeper").read_json(f"sweeps/{summary['sweep_id']}/sweep.json")
    assert saved["options"]["sampler"] == "cmaes"


def test_qmc_sampler_draws_the_sobol_sequence(make_project, ray_head: str) -> None:
    project = make_project(SAMPLER_STEP, {"echo.py": ECHO_PY})
    summary = _sampler_sweep(project, ray_head, "qmc")
    assert summary["trials"]["complete"] == 5
    qmc = study(project, summary["sweep_id"])
    # trials 1.. take the points of an unscrambled 2-d Sobol sequence, in order
    points = [(t.params["x"], t.params["y"]) for t in qmc.trials[1:]]
    assert points == [(0.0, 0.0), (0.5, 0.5), (0.75, 0.25), (0.25, 0.75)]


def test_gp_sampler_without_pytorch_is_one_clear_error(make_project, ray_head: str) -> None:
    project = make_project(SAMPLER_STEP, {"echo.py": ECHO_PY})
    if importlib.util.find_spec("torch") is not None:
        summary = _sampler_sweep(project, ray_head, "gp")  # PyTorch here: the real GP runs
        assert summary["trials"]["complete"] == 5
        return
    proc = sweep(project, ray_head, "echo", "--sampler", "gp", "--trials", "2", "--metric", "loss")
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "sweep: error: the gp sampler needs PyTorch: pip install torch, or use tpe"
    ]


def test_values_stay_finite_in_a_log_range(make_project, ray_head: str) -> None:
    # a log range that starts at a tiny value: every draw is a positive finite float
    project = make_project(SAMPLER_STEP, {"echo.py": ECHO_PY})
    summary = sweep_json(
        project, ray_head, "echo", "--trials", "3", "-p", "x=log:1e-12..1e-9", "--metric", "loss"
    )
    for row in records(project, summary["sweep_id"]):
        x = row["parameters"]["x"]
        assert math.isfinite(x) and 1e-12 <= x <= 1e-9
        assert float(argv(row)["x"]) == x  # rendered without loss of precision
