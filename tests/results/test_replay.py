"""`sweep replay` and `results.replay` on real sweeps: the recorded curves of a finished sweep,
fed to the live sweep's Optuna pruners, say what would have been stopped and saved."""

from __future__ import annotations

import json
import shutil
import statistics
import textwrap
from pathlib import Path
from typing import Any

import pytest

from sweeper.results import open as open_results
from tests.conftest import sweep_cli

pytestmark = [pytest.mark.ray, pytest.mark.slow]

#: Trials run one at a time in this order (a manual search): two bad ones, after three good
#: ones have completed, so the median rule (3 startup trials, 1 warm-up step) must stop them.
OFFSETS = [0.5, 0.3, 0.4, 0.2, 3.0, 0.1, 4.0, 0.0]
BAD = {3.0, 4.0}
EPOCHS = 5

PROJECT = textwrap.dedent(
    f"""\
    - step:
        name: fit
        image: sweeper-test/python:latest
        command: python ./fit.py {{parameters}}
        parameters:
          - {{name: offset, type: float, default: 0.0}}
          - {{name: epochs, type: integer, default: {EPOCHS}}}
    - step:
        name: quiet
        image: sweeper-test/python:latest
        command: python ./quiet.py {{parameters}}
        parameters:
          - {{name: x, type: integer, default: 1}}
    - task:
        name: curves
        step: fit
        type: manual_search
        parameter-sets: {json.dumps([{"offset": o} for o in OFFSETS])}
        parameters:
          - {{name: offset, style: multiple, rules: {{items: {json.dumps(sorted(set(OFFSETS)))}}}}}
    """
)

FIT = textwrap.dedent(
    """\
    import argparse, json, time
    parser = argparse.ArgumentParser()
    parser.add_argument("--offset", type=float)
    parser.add_argument("--epochs", type=int)
    args = parser.parse_args()
    for epoch in range(args.epochs):
        time.sleep(0.1)  # an epoch of "training": the time a prune saves
        print(json.dumps({"epoch": epoch, "loss": args.offset + 1.0 / (epoch + 1)}), flush=True)
    """
)

QUIET = 'import json\nprint(json.dumps({"note": "no loss here"}))\n'


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A finished sweep of `fit`, one trial at a time, with a loss line per epoch."""
    project = tmp_path_factory.mktemp("replay") / "project"
    project.mkdir()
    (project / "valohai.yaml").write_text(PROJECT)
    (project / "fit.py").write_text(FIT)
    (project / "quiet.py").write_text(QUIET)
    proc = sweep_cli(
        *("fit", "--task", "curves", "--parallel", "1", "--runtime", "local"),
        *("--metric", "loss", "--direction", "minimize", "--json"),
        cwd=project,
        check=True,
    )
    summary = json.loads(proc.stdout)
    assert summary["trials"]["complete"] == len(OFFSETS)
    return project, summary["sweep_id"]


def _replay(project: Path, pruner: str, sweep: str = "latest") -> dict[str, Any]:
    proc = sweep_cli("replay", sweep, "--pruner", pruner, "--json", cwd=project, check=True)
    return json.loads(proc.stdout)


def _median_rule(curves: list[list[float]]) -> list[int | None]:
    """Optuna's MedianPruner(n_startup_trials=3, n_warmup_steps=1) by hand, for trials run one
    after another: stop a trial at the first step >= 1 where its best value so far is worse
    than the median, at that step, of the earlier trials that completed."""
    pruned_at: list[int | None] = []
    for curve in curves:
        completed = [c for c, p in zip(curves, pruned_at, strict=False) if p is None]
        stop = None
        if len(completed) >= 3:
            for step in range(1, len(curve)):
                if min(curve[: step + 1]) > statistics.median(c[step] for c in completed):
                    stop = step
                    break
        pruned_at.append(stop)
    return pruned_at


def test_median_replay_prunes_the_bad_trials_as_the_rule_says(swept: tuple[Path, str]) -> None:
    project, sweep_id = swept
    replay = _replay(project, "median")
    results = open_results(project / ".sweeper")
    runs = results.executions(sweep_id=sweep_id).sort_values("started_at")
    events = results.metrics()
    events = events[events["key"] == "loss"]
    curves = [
        events[events["execution_id"] == eid].sort_values("seq")["value"].tolist()
        for eid in runs["execution_id"]
    ]
    assert [len(c) for c in curves] == [EPOCHS] * len(OFFSETS)

    trials = replay["trials"]
    # trials in the order the executions started, each with its recorded curve
    assert [t["execution_id"] for t in trials] == list(runs["execution_id"])
    assert [t["curve"] for t in trials] == curves
    assert [t["pruned_at_step"] for t in trials] == _median_rule(curves)
    offsets = list(runs["param.offset"])
    assert {o for o, t in zip(offsets, trials, strict=True) if t["pruned"]} == BAD
    assert replay["pruned"] == len(BAD)

    # compute saved: each pruned trial stops at the time of its prune-step line
    started = dict(zip(runs["execution_id"], runs["started_at"], strict=True))
    durations = dict(zip(runs["execution_id"], runs["duration_s"], strict=True))
    for trial in trials:
        eid = trial["execution_id"]
        assert trial["duration_s"] == pytest.approx(durations[eid])
        if not trial["pruned"]:
            assert trial["saved_s"] == 0 and trial["value"] == trial["curve"][-1]
            continue
        line = (
            events[events["execution_id"] == eid].sort_values("seq").iloc[trial["pruned_at_step"]]
        )
        used = (line["time"] - started[eid]).total_seconds()
        assert trial["used_s"] == pytest.approx(used, abs=1e-6)
        assert trial["saved_s"] == pytest.approx(durations[eid] - used, abs=1e-6) and used > 0
        assert trial["value"] == trial["curve"][trial["pruned_at_step"]]
    assert replay["saved_s"] > 0
    assert replay["saved_s"] == pytest.approx(sum(t["saved_s"] for t in trials))
    assert replay["saved_percent"] == pytest.approx(
        100 * replay["saved_s"] / sum(durations.values())
    )

    # the best trial (offset 0) survives; ranks barely move since the bad trials stay last
    best = results.best(sweep_id, k=1).iloc[0]
    assert best["param.offset"] == 0.0
    assert replay["best_execution_id"] == best["execution_id"]
    assert replay["best_survived"] is True
    values = [t["value"] for t in trials]
    recorded = [t["recorded_value"] for t in trials]
    assert recorded == [c[-1] for c in curves]
    assert replay["rank_correlation"] == pytest.approx(_spearman(values, recorded))
    assert replay["rank_correlation"] > 0.9

    # the library says the same as the command
    assert results.replay(sweep_id, pruner="median").to_dict() == replay


def _spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rho of tie-free samples: Pearson's r of their ranks."""
    rx = [sorted(xs).index(x) for x in xs]
    ry = [sorted(ys).index(y) for y in ys]
    return statistics.correlation(rx, ry)


@pytest.mark.parametrize("pruner", ["median", "asha", "hyperband"])
def test_replay_is_deterministic(swept: tuple[Path, str], pruner: str) -> None:
    project, sweep_id = swept
    first = sweep_cli("replay", sweep_id, "--pruner", pruner, "--json", cwd=project, check=True)
    again = sweep_cli("replay", "latest", "--pruner", pruner, "--json", cwd=project, check=True)
    assert first.stdout == again.stdout
    replay = json.loads(first.stdout)
    assert replay["pruner"] == pruner and len(replay["trials"]) == len(OFFSETS)
    assert replay["best_survived"] is True  # the best is best at every step


def test_the_table_names_pruned_trials_and_the_savings(swept: tuple[Path, str]) -> None:
    project, sweep_id = swept
    replay = _replay(project, "median")
    proc = sweep_cli("replay", "latest", "--pruner", "median", cwd=project, check=True)
    for trial in replay["trials"]:
        assert trial["execution_id"] in proc.stdout
    assert proc.stdout.count("pruned at step 1") == len(BAD)
    assert (
        f"pruned {len(BAD)} of {len(OFFSETS)} trials; saved {replay['saved_s']:.2f}s of "
        f"{replay['total_s']:.2f}s execution time ({replay['saved_percent']:.1f}%); "
        "best trial survives" in proc.stdout
    )
    assert "timestamp of the metric line" in proc.stderr


def test_plot_draws_the_replay(swept: tuple[Path, str], tmp_path: Path) -> None:
    project, sweep_id = swept
    out = tmp_path / "plots"
    proc = sweep_cli(
        "plot", sweep_id, "-o", str(out), "--replay", "median", "--replay", "asha", cwd=project
    )
    assert proc.returncode == 0, proc.stderr
    for pruner in ("median", "asha"):
        image = out / f"replay-{pruner}.png"
        assert str(image) in proc.stdout.splitlines()
        data = image.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000, "an empty plot"


def test_errors_are_one_clear_line(swept: tuple[Path, str], tmp_path: Path) -> None:
    project, sweep_id = swept
    unknown = sweep_cli("replay", "no-such-sweep", "--pruner", "median", cwd=project)
    assert unknown.returncode != 0
    assert unknown.stderr.startswith('sweep: error: unknown sweep "no-such-sweep"')
    bad = sweep_cli("replay", sweep_id, "--pruner", "patience", cwd=project)
    assert bad.returncode != 0
    assert bad.stderr.strip() == (
        'sweep: error: cannot replay pruner "patience"; choose one of median, asha, hyperband'
    )
    out = tmp_path / "plots"
    plot = sweep_cli("plot", sweep_id, "-o", str(out), "--replay", "none", cwd=project)
    assert plot.returncode != 0 and plot.stderr.startswith("sweep: error: cannot replay")
    assert not out.exists(), "a failed replay must not leave half the plots"

    # a sweep whose step never prints the objective: nothing to replay (in a store of its
    # own, so that "latest" stays the main sweep for the other tests)
    other = tmp_path / "quiet"
    shutil.copytree(project, other, ignore=shutil.ignore_patterns(".sweeper"))
    quiet = sweep_cli(
        *("quiet", "--trials", "2", "-p", "x=1,2", "--runtime", "local"),
        *("--metric", "loss", "--direction", "minimize", "--json"),
        cwd=other,
    )
    quiet_id = json.loads(quiet.stdout)["sweep_id"]
    proc = sweep_cli("replay", "latest", "--pruner", "median", cwd=other)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(
        f'sweep: error: sweep {quiet_id} has no intermediate "loss" metric events to replay'
    )
