"""A sweep: Optuna asks, Ray actors run executions, metrics go back to Optuna.

:func:`run_plan` runs a :class:`~sweeper.sweep.plan.SweepPlan` (:func:`~sweeper.sweep.plan.plan_sweep`
checked the options and built it): it takes the sweep's driver lock, hands a
:class:`~sweeper.sweep.policy.SweepPolicy` to the one
:class:`~sweeper.cluster.controller.Controller` and returns the
:class:`~sweeper.sweep.result.SweepResult`. K trials are in flight at once; each runs as one
execution on a Ray actor that holds the trial's resources. The Optuna study lives in a
journal file inside the store (:mod:`sweeper.sweep.study`), and every trial's execution is
written to the store by the actor that ran it, so a killed driver loses nothing: ``resume``
re-tells finished executions the driver never heard about and re-runs, with the same
parameters, what was running (:mod:`sweeper.sweep.outcomes`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import optuna

from sweeper.cluster.controller import Controller
from sweeper.status import Status
from sweeper.store import RecordStore
from sweeper.sweep.failures import RESOURCE_CLASSES, describe
from sweeper.sweep.forecasting_policy import ForecastingPolicy
from sweeper.sweep.history import trial_distributions
from sweeper.sweep.outcomes import adopt_executions
from sweeper.sweep.plan import SweepPlan
from sweeper.sweep.policy import Progress
from sweeper.sweep.reproducible import WindowedPruner
from sweeper.sweep.result import SweepResult
from sweeper.sweep.samplers import make_pruner, make_sampler
from sweeper.sweep.state import SweepState
from sweeper.sweep.study import is_copy, open_study, push, sole_driver, study_storage


def run_plan(
    plan: SweepPlan,
    store: RecordStore,
    *,
    on_progress: Callable[[Progress], None] | None = None,
) -> SweepResult:
    """Run the plan's trials until ``plan.trials`` have finished; how the sweep ended.

    The :class:`~sweeper.cluster.controller.Controller` runs the trials; the
    :class:`~sweeper.sweep.policy.SweepPolicy` decides what they are and what they mean.
    ``on_progress`` sees each turn of the loop. Ctrl-C ends the sweep ``interrupted`` and
    is raised again.
    """
    options = plan.options
    controller = Controller(
        store, address=options.address, runtime=options.runtime, fresh_actors=options.fresh_actors
    )
    storage: Any = None

    def open_driver_study() -> optuna.Study:
        # opened by the policy after it saved sweep.json: a driver killed before then
        # leaves no journal of a sweep that cannot be resumed
        nonlocal storage
        storage = study_storage(store, plan.sweep_id, options.storage, writer=True)
        return open_plan_study(plan, store, storage)

    policy = ForecastingPolicy(plan, store, open_driver_study, on_progress=on_progress)
    # before Ray starts: a second driver of this sweep is refused at once
    with sole_driver(store, plan.sweep_id):
        try:
            controller.run(policy)
        finally:
            push(storage)  # the last state of a study in an object store
    assert policy.result is not None  # the controller ends every run it starts
    result = policy.result
    if result.status is Status.FAILED:
        result = replace(result, failure=_failure(plan, result, policy.tally.counted_failures()))
    return result


def open_plan_study(plan: SweepPlan, store: RecordStore, storage: Any) -> optuna.Study:
    """The driver's study of ``plan`` in ``storage``: the plan's sampler and pruner, a copy caught
    up with the records on resume (what :class:`~sweeper.sweep.policy.SweepPolicy` opens)."""
    study = open_study(
        storage,
        plan.sweep_id,
        sampler=make_sampler(
            plan.sampler, plan.space, seed=plan.seed, objectives=len(plan.metrics)
        ),
        pruner=_pruner(plan),
        metrics=plan.metrics,
        directions=plan.directions,
    )
    if plan.resume and is_copy(storage):
        # a journal copy can be behind the records, which are the truth
        created_at = SweepState(store, plan.sweep_id).created_at
        distributions = trial_distributions(plan.space)
        adopt_executions(study, storage, store, distributions, created_at)
    return study


def _pruner(plan: SweepPlan) -> optuna.pruners.BasePruner:
    """The plan's pruner; reproducible, one that sees only what each trial's ask saw."""
    pruner = make_pruner(plan.pruner, objectives=len(plan.metrics))
    return WindowedPruner(pruner) if plan.reproducible else pruner


def _failure(plan: SweepPlan, result: SweepResult, counted_failures: int) -> str:
    """Why a sweep failed: too many failed trials, or none completed; the top reasons."""
    groups = list(result.failures)
    limit = plan.max_failures
    if limit is not None and counted_failures > limit:
        what = f"stopped after {counted_failures} failed trials, more than --max-failures {limit}"
        # the failures the resources caused steer the search; they are not the cause
        groups = [g for g in groups if g.failure_class not in RESOURCE_CLASSES]
    else:
        finished = sum(result.counts[k] for k in Status.counted())
        what = f"failed: none of its {finished} finished trials completed"
    reasons = describe(groups)
    return (
        f"sweep {plan.sweep_id} {what}{': ' + reasons if reasons else ''}. "
        f"`sweep ls --sweep {plan.sweep_id} --status error` lists them"
    )
