"""A sweep's plan: worked out once from frozen options, the valohai.yaml and the store; no Ray."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from sweeper.cli.project import project_from
from sweeper.errors import SweeperError
from sweeper.store import Store
from sweeper.sweep.plan import SweepOptions, SweepPlan, plan_sweep
from tests.sweep.test_policy import STEP


def plan(make_project: Any, tmp_path: Path, options: SweepOptions, **more: Any) -> SweepPlan:
    project = make_project(STEP, {"train.py": "print('hi')\n"})
    return plan_sweep(
        options,
        config=project_from(str(project / "valohai.yaml"), None).config,
        project_dir=project,
        store=Store.open(tmp_path / "store", create=True),
        code_version="v1",
        code_archive=None,
        **more,
    )


def test_the_plan_fills_in_what_the_options_left_out_without_changing_them(
    make_project: Any, tmp_path: Path
) -> None:
    options = SweepOptions(step="train", specs={"x": ["0.1,0.2,0.3"]}, task="until-good")
    made = plan(make_project, tmp_path, options, sweep_id="S1")
    assert (made.sampler, made.trials, made.metrics, made.directions) == (
        "tpe",
        10,  # the task's execution-count
        ("loss",),  # its optimization-target-metric, minimized as a loss
        ("minimize",),
    )
    assert made.objective == "minimize loss" and made.stop_condition is not None
    assert options.metrics == [] and options.trials is None and options.sampler is None
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'trials'"):
        setattr(options, "trials", 3)  # noqa: B010 - what a frozen dataclass refuses
    saved = made.saved_options()
    assert saved == {
        **options.to_dict(),
        "metrics": ["loss"],
        "directions": ["minimize"],
        "sampler": "tpe",
        "trials": 10,
    }
    assert list(saved) == list(options.to_dict())  # the sweep.json format, key for key
    assert made.template.build({"x": 0.2}).parameters["x"] == 0.2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"metrics": ["loss"]}, "say how many trials to run with --trials N"),
        ({"metrics": ["loss"], "trials": 0}, "--trials must be at least 1"),
        ({"trials": 2, "metrics": ["a", "b"], "directions": ["minimize"]}, "2 --metric but 1"),
        ({"trials": 2, "directions": ["up"], "metrics": ["a"]}, "minimize or maximize, not"),
    ],
)
def test_bad_options_are_one_error_before_anything_runs(
    make_project: Any, tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(SweeperError, match=message):
        plan(make_project, tmp_path, SweepOptions(step="train", **options))


def test_a_resumed_sweep_keeps_its_saved_metrics(make_project: Any, tmp_path: Path) -> None:
    # saved without a metric: unranked, though a task of the step names one now
    saved = SweepOptions(step="train", trials=2, sampler="random")
    made = plan(make_project, tmp_path, saved, sweep_id="S1", resume=True)
    assert made.metrics == () and made.objective == "unranked" and made.objective_note is None
    with pytest.raises(SweeperError, match="the tpe sampler learns from it"):
        plan(make_project, tmp_path, dataclasses.replace(saved, sampler="tpe"), resume=True)
