"""Sweeps: :func:`run_sweep` and :func:`resume_sweep`, returning a :class:`~sweeper.api.results.SweepResult`."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sweeper.api._common import as_texts, start_ray
from sweeper.errors import SweeperError
from sweeper.project import Project, project_from

if TYPE_CHECKING:
    from sweeper.sweep.distributed import GroupPlan, GroupResult
    from sweeper.sweep.plan import SweepOptions, SweepPlan
    from sweeper.sweep.policy import Progress
    from sweeper.sweep.result import SweepResult

OnSweepStart = Callable[["SweepPlan"], None]
OnProgress = Callable[["Progress"], None]


def _sweep(
    project: Project,
    options: SweepOptions,
    *,
    sweep_id: str | None = None,
    code: tuple[str, str | None] | None = None,
    on_start: OnSweepStart | None,
    on_progress: OnProgress | None,
) -> SweepResult:
    from sweeper.sweep.engine import run_plan
    from sweeper.sweep.plan import plan_sweep

    store = project.open_store(create=True)
    version, archive = code or project.snapshot_code(store)
    plan = plan_sweep(
        options,
        config=project.config,
        project_dir=project.directory,
        store=store,
        code_version=version,
        code_archive=archive,
        sweep_id=sweep_id,
        resume=code is not None,
    )
    if on_start is not None:
        on_start(plan)
    return run_plan(plan, store, on_progress=on_progress)


def run_sweep(
    step: str,
    *,
    trials: int | None = None,
    config: str | os.PathLike[str] = "valohai.yaml",
    store: str | None = None,
    on_start: OnSweepStart | None = None,
    on_progress: OnProgress | None = None,
    **options: Any,
) -> SweepResult:
    """Sweep ``step``: run ``trials`` trials on Ray, Optuna suggesting the parameters.

    ``options`` are the fields of :class:`~sweeper.sweep.plan.SweepOptions`, named like
    the ``sweep`` command's options (``metrics=["accuracy"]``, ``parallel=2``,
    ``specs={"learning_rate": "log:1e-4..1", "epochs": 3}`` as ``-p`` takes them,
    ``runtime="local"``, ``address=...``).
    ``on_start`` sees the sweep's :class:`~sweeper.sweep.plan.SweepPlan` (its search space,
    sweep id, trials) before the first trial, ``on_progress`` each change. A sweep that fails (``max_failures``, no trial
    completed) returns a result with status ``failed`` and its ``failure``.
    """
    project = project_from(config, store)
    start_ray(project, options.get("address"), step=step, task=options.get("task"))
    from sweeper.sweep.distributed import is_distributed
    from sweeper.sweep.plan import SweepOptions

    if is_distributed(project.config, options.get("task")):
        raise SweeperError(
            f'task "{options["task"]}" is a distributed task: its members run together, '
            "not as a sweep; run it with sweeper.run_group (what `sweep STEP --task` does)"
        )

    if "specs" in options:  # as -p gives them: texts, a list only for several -p of one name
        options["specs"] = {name: as_texts(spec) for name, spec in options["specs"].items()}
    sweep_options = SweepOptions(step=step, trials=trials, **options)
    return _sweep(project, sweep_options, on_start=on_start, on_progress=on_progress)


def is_distributed_task(
    task: str | None, *, config: str | os.PathLike[str] = "valohai.yaml"
) -> bool:
    """Whether ``task`` is a ``type: distributed`` task of the valohai.yaml at ``config``."""
    from sweeper.sweep.distributed import is_distributed

    return is_distributed(project_from(config, None).config, task)


def run_group(
    step: str,
    *,
    task: str,
    config: str | os.PathLike[str] = "valohai.yaml",
    store: str | None = None,
    on_start: Callable[[GroupPlan], None] | None = None,
    **options: Any,
) -> GroupResult:
    """Run the distributed task ``task`` of ``step``: all its members at once, as one group.

    Each member gets ``/valohai/config/distributed.json``; a member that fails stops the
    others. ``options`` are :class:`~sweeper.sweep.plan.SweepOptions` fields that apply to
    one group: ``specs`` (one value each), ``runtime``, ``address``, ``environment``,
    ``inputs``, ``cpus_per_trial``, ``gpus_per_trial``, ``pull_policy``. Raises
    :class:`~sweeper.errors.ClusterError` when the cluster cannot hold the whole group.
    """
    from sweeper.sweep.distributed import plan_group
    from sweeper.sweep.distributed import run_group as run
    from sweeper.sweep.plan import SweepOptions

    project = project_from(config, store)
    start_ray(project, options.get("address"), step=step, task=task)
    if "specs" in options:
        options["specs"] = {name: as_texts(spec) for name, spec in options["specs"].items()}
    opened = project.open_store(create=True)
    version, archive = project.snapshot_code(opened)
    plan = plan_group(
        SweepOptions(step=step, task=task, **options),
        config=project.config,
        project_dir=project.directory,
        code_version=version,
        code_archive=archive,
        store=opened,
    )
    if on_start is not None:
        on_start(plan)
    return run(plan, opened)


def resume_sweep(
    sweep_id: str | None = None,
    *,
    address: str | None = None,
    environment: Mapping[str, str] | None = None,
    config: str | os.PathLike[str] = "valohai.yaml",
    store: str | None = None,
    on_start: OnSweepStart | None = None,
    on_progress: OnProgress | None = None,
    budgets: Mapping[str, Any] | None = None,
) -> SweepResult:
    """Continue a sweep to exactly its number of trials (default: the latest unfinished one).

    It runs with the options, code and search space it was started with; ``address`` moves
    it to another Ray cluster and ``environment`` gives again the secret variables, whose
    values were never saved. ``budgets`` (``budget_s``, ``budget_cpu_hours``,
    ``budget_gpu_hours``) replace the sweep's own: what it spent so far counts against them.
    """
    from sweeper.execution.spec import MASK
    from sweeper.sweep.plan import SweepOptions

    project = project_from(config, store)
    opened = project.open_store()
    if sweep_id is None:
        sweep_id = opened.latest_sweep(unfinished=True)
        if sweep_id is None:
            raise SweeperError(f"no unfinished sweep in the store {opened.location}")
    saved = opened.get_sweep(sweep_id)
    if not saved:
        raise SweeperError(f'unknown sweep "{sweep_id}" in the store {opened.location}')
    options = SweepOptions(**saved["options"])
    options = replace(
        options,
        address=address or options.address,
        environment={**options.environment, **(environment or {})},
        **(budgets or {}),
    )
    masked = sorted(k for k, v in options.environment.items() if v == MASK)
    if masked:
        raise SweeperError(
            f"the sweep {sweep_id} was started with the secret variable(s) {', '.join(masked)}, "
            f"whose values are not saved: give them again, e.g. sweep resume {sweep_id} "
            + " ".join(f"-e {name}=VALUE" for name in masked)
        )
    start_ray(project, options.address, step=options.step, task=options.task)
    code = (saved["code_version"], saved.get("code_archive"))
    return _sweep(
        project, options, sweep_id=sweep_id, code=code, on_start=on_start, on_progress=on_progress
    )
