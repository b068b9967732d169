"""A sweep's input as values: the options a user gave, and the plan worked out from them once.

:class:`SweepOptions` is what the user asked for (saved in ``sweep.json``, so that ``resume``
needs only the sweep id). :func:`plan_sweep` checks it against the valohai.yaml and the store
and returns a :class:`SweepPlan`: the search space, the sampler and pruner by name, the
metrics and their directions, the number of trials, the stop condition and the spec
template every trial is built from. Both are frozen; nothing here starts Ray or opens a
study, so a bad option is one error before anything runs.

>>> options = SweepOptions(step="train", metrics=["loss"])
>>> options.to_dict()["metrics"], options.to_dict()["max_retries"]
(['loss'], 2)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from optuna.distributions import CategoricalDistribution

from sweeper.config import Config, Expression, Step, Task
from sweeper.errors import SweeperError
from sweeper.execution.ids import new_execution_id
from sweeper.execution.inputs import BlobStore, pin_latest, resolve_inputs
from sweeper.execution.spec import MASK, SpecTemplate, is_secret_name
from sweeper.forecast.straggler import check_factor
from sweeper.record import guess_direction
from sweeper.status import Status
from sweeper.store import RecordStore
from sweeper.sweep.budget import Budget
from sweeper.sweep.choices import VALUE_FREE_SAMPLERS
from sweeper.sweep.history import resolve_sources
from sweeper.sweep.samplers import make_pruner, make_sampler
from sweeper.sweep.space import SearchSpace, resolve_space


@dataclass(frozen=True)
class SweepOptions:
    """Everything a sweep was started with (saved with it, so ``resume`` needs only the id)."""

    step: str
    trials: int | None = None
    parallel: int | None = None
    metrics: list[str] = field(default_factory=list)
    directions: list[str] = field(default_factory=list)
    sampler: str | None = None
    pruner: str = "none"
    seed: int | None = None
    specs: dict[str, list[str]] = field(default_factory=dict)
    task: str | None = None
    gpus_per_trial: float | None = None
    cpus_per_trial: float | None = None
    runtime: str = "local"
    address: str | None = None
    storage: str | None = None
    reuse: bool = False
    #: Earlier sweeps whose complete trials seed the study: ids, ``latest`` or ``step``.
    warm_start: list[str] = field(default_factory=list)
    max_failures: int | None = None
    max_retries: int = 2
    fresh_actors: bool = False
    inputs: dict[str, list[str]] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    pull_policy: str = "missing"
    #: Trials' parameters a function of the seed and earlier results only, whatever the
    #: timing (:mod:`sweeper.sweep.reproducible`). None: on when ``seed`` is given.
    reproducible: bool | None = None
    #: ``--budget`` (``wall_s``: all runs together), ``--budget-cpu-hours`` (``cpu_hours``),
    #: ``--budget-gpu-hours`` (``gpu_hours``): :class:`~sweeper.sweep.budget.Budget`'s fields.
    budget: dict[str, float] = field(default_factory=dict)
    #: ``--target``: a value of the metric to reach (the forecast's chance of it).
    target: float | None = None
    #: ``--straggler-factor``: stop a trial past this many times its forecast duration.
    straggler_factor: float | None = None

    def to_dict(self, secret_names: frozenset[str] = frozenset()) -> dict[str, Any]:
        """JSON-able form; values of secret variables are masked (``resume -e`` gives them again).

        ``secret_names`` are the variables the step declares ``secret: true``; names like
        ``*TOKEN*`` are masked too.
        """
        data = asdict(self)
        data["environment"] = {
            k: MASK if is_secret_name(k, secret_names) else v for k, v in self.environment.items()
        }
        return data


@dataclass(frozen=True)
class SweepPlan:
    """A sweep as it will run: its options checked and completed, once, before anything runs.

    ``metrics``, ``directions``, ``sampler`` and ``trials`` are what the options said or
    what the plan chose for them (the task's metric, a guessed direction, ``grid`` for a
    grid, the grid's size); ``template`` builds every trial's spec from its parameters.
    ``resume``: the sweep exists and continues (its ``sweep.json`` is not written again).
    """

    options: SweepOptions
    sweep_id: str
    step: Step
    space: SearchSpace
    template: SpecTemplate
    metrics: tuple[str, ...]
    directions: tuple[str, ...]
    sampler: str
    seed: int | None
    pruner: str
    trials: int
    #: ``--parallel``: trials in flight at once (None: as many as fit on the largest node).
    parallel: int | None = None
    stop_condition: Expression | None = None
    max_retries: int = 2
    max_failures: int | None = None
    #: The earlier sweeps ``--warm-start`` names, resolved to ids (none on resume).
    warm_sources: tuple[str, ...] = ()
    reuse: bool = False
    resume: bool = False
    #: A line for the user when the metric to rank by was not given on the command line.
    objective_note: str | None = None
    #: Results told in the order trials were asked, each asked after the one ``parallel``
    #: before it was told (:mod:`sweeper.sweep.reproducible`).
    reproducible: bool = False

    @property
    def objective(self) -> str:
        """How the trials are ranked: ``minimize loss``, or ``unranked``."""
        pairs = zip(self.directions, self.metrics, strict=True)
        return ", ".join(f"{d} {m}" for d, m in pairs) or "unranked"

    def saved_options(self, secret_names: frozenset[str] = frozenset()) -> dict[str, Any]:
        """The options as ``sweep.json`` keeps them: what the plan chose filled in (see the class)."""
        chosen = replace(
            self.options,
            metrics=list(self.metrics),
            directions=list(self.directions),
            sampler=self.sampler,
            trials=self.trials,
        )
        return chosen.to_dict(secret_names)

    def row(
        self, status: Status, *, created_at: str, best_execution_id: str | None = None
    ) -> dict[str, Any]:
        """The sweep's row of the ``sweeps`` dataset (one per status change)."""
        return {
            "sweep_id": self.sweep_id,
            "step": self.step.name,
            "sampler": self.sampler,
            "pruner": self.pruner,
            "metrics": list(self.metrics),
            "directions": list(self.directions),
            "search_space": self.space.to_json(),
            "seed": self.seed,
            "trials_asked": self.trials,
            "status": status,
            "best_execution_id": best_execution_id,
            "created_at": created_at,
            "updated_at": datetime.now(timezone.utc).isoformat(),
        }


def _reproducible(options: SweepOptions) -> bool:
    """``--reproducible``/``--free-order`` as given; else reproducible when seeded."""
    return options.seed is not None if options.reproducible is None else options.reproducible


def plan_sweep(
    options: SweepOptions,
    *,
    config: Config,
    project_dir: Path,
    store: RecordStore,
    code_version: str,
    code_archive: str | None,
    sweep_id: str | None = None,
    resume: bool = False,
) -> SweepPlan:
    """Check ``options`` against the valohai.yaml and the store; the plan, or a :class:`SweeperError`.

    ``resume``: ``options`` are the saved ones of the sweep ``sweep_id``, which continues.
    """
    step = config.get_step(options.step)
    task = config.get_task(options.task) if options.task else None
    if task is not None and task.step != step.name:
        raise SweeperError(f'task "{task.name}" is for step "{task.step}", not "{step.name}"')
    metrics, directions, note = _objective(options, config, step, task, resume=resume)
    space = resolve_space(step, options.specs, task)
    options = pin_options(options, step, project_dir, store)
    template = spec_template(options, step, project_dir, code_version, code_archive)
    sampler, trials = _search(options, space, task, objectives=len(metrics))
    sweep_id = sweep_id or new_execution_id()
    warm = options.warm_start and not resume
    return SweepPlan(
        options=options,
        sweep_id=sweep_id,
        step=step,
        space=space,
        template=template,
        metrics=metrics,
        directions=directions,
        sampler=sampler,
        seed=options.seed,
        pruner=options.pruner,
        trials=trials,
        parallel=options.parallel,
        stop_condition=task.stop_condition if task is not None else None,
        max_retries=options.max_retries,
        max_failures=options.max_failures,
        warm_sources=tuple(
            resolve_sources(store, step.name, options.warm_start, exclude=sweep_id) if warm else ()
        ),
        reuse=options.reuse,
        resume=resume,
        objective_note=note,
        reproducible=_reproducible(options),
    )


def check_forecast_options(options: SweepOptions, metrics: tuple[str, ...]) -> None:
    """A :class:`SweeperError` for a budget or target that cannot work."""
    Budget.of(options.budget)
    if options.straggler_factor is not None:
        check_factor(options.straggler_factor)
    if options.target is not None and len(metrics) != 1:
        raise SweeperError(
            "--target needs the one metric it is a value of: name it with --metric NAME"
        )


def pin_options(
    options: SweepOptions, step: Step, project_dir: Path, store: BlobStore
) -> SweepOptions:
    """``options`` with each ``dataset://NAME/latest`` input (given or a default) as the
    version it means now, as ``--input`` values.

    Every trial, and a ``resume`` (which reads the saved options), then reads the version
    that was newest when the sweep was planned, not one made while it runs.
    """
    given = resolve_inputs(step.inputs, options.inputs, project_dir=project_dir)
    pinned = pin_latest(given, store)
    if pinned is None:
        return options
    changed = {name: list(uris) for name, uris in pinned.items() if list(uris) != given[name]}
    return replace(options, inputs={**options.inputs, **changed})


def spec_template(
    options: SweepOptions,
    step: Step,
    project_dir: Path,
    code_version: str,
    code_archive: str | None,
) -> SpecTemplate:
    """What every trial's spec shares; the inputs checked once, as ``sweep run`` does.

    A bad ``--input`` is one error before the sweep starts, not N failed trials.
    """
    return SpecTemplate(
        step=step,
        code_version=code_version,
        code_archive=code_archive,
        project_dir=str(project_dir),
        inputs=resolve_inputs(step.inputs, options.inputs, project_dir=project_dir),
        runtime=options.runtime,
        environment=options.environment,
        cpus=options.cpus_per_trial,
        gpus=options.gpus_per_trial,
        pull_policy=options.pull_policy,
    )


def _search(
    options: SweepOptions, space: SearchSpace, task: Task | None, *, objectives: int
) -> tuple[str, int]:
    """The sampler's name and the number of trials; the sampler and pruner checked."""
    sampler = options.sampler or ("grid" if space.grid is not None else "tpe")
    if not objectives:
        _check_unranked(sampler, options.pruner)
    # built here only for their errors (a grid of ranges, cmaes without its package); the
    # study builds its own from the plan
    make_sampler(sampler, space, seed=options.seed, objectives=objectives)
    trials = options.trials if options.trials is not None else _default_trials(sampler, space, task)
    if trials < 1:
        raise SweeperError("--trials must be at least 1")
    make_pruner(options.pruner, objectives=objectives)
    return sampler, trials


def _objective(
    options: SweepOptions, config: Config, step: Step, task: Task | None, *, resume: bool
) -> tuple[tuple[str, ...], tuple[str, ...], str | None]:
    """The metrics, their directions and the note that says where the metric came from."""
    metrics, note = list(options.metrics), None
    if not metrics and not resume:  # a resumed sweep keeps what it started with
        metrics, note = _default_metrics(config, step, task)
    directions = list(options.directions) or [guess_direction(m) for m in metrics]
    if len(directions) != len(metrics):
        raise SweeperError(
            f"{len(metrics)} --metric but {len(directions)} --direction: give one direction per metric"
        )
    for direction in directions:
        if direction not in ("minimize", "maximize"):
            raise SweeperError(f'--direction must be minimize or maximize, not "{direction}"')
    check_forecast_options(options, tuple(metrics))
    return tuple(metrics), tuple(directions), note


def _default_metrics(config: Config, step: Step, task: Task | None) -> tuple[list[str], str | None]:
    """The metric to rank by when ``--metric`` is not given, and a line saying why.

    The task's own optimization-target-metric; else the one the step's tasks name (a
    grid task usually names none while its Bayesian sibling does); else none, and the
    sweep runs unranked, as a Valohai grid or random search does.
    """
    if task is not None and task.optimization_target_metric:
        return [task.optimization_target_metric], None
    named: dict[str, list[str]] = {}
    for other in config.tasks.values():
        if other.step == step.name and other.optimization_target_metric:
            named.setdefault(other.optimization_target_metric, []).append(other.name)
    if len(named) == 1:
        ((metric, tasks),) = named.items()
        if task is None:
            return [metric], None  # what the step's tasks agree on: nothing to explain
        return [metric], (
            f'task "{task.name}" names no optimization-target-metric: the trials are '
            f"ranked by {metric}, the optimization-target-metric of task "
            f"{', '.join(tasks)} (--metric NAME to choose another)"
        )
    why = (
        f"the tasks of step {step.name} name several ({', '.join(sorted(named))})"
        if named
        else f"no task of step {step.name} names an optimization-target-metric"
    )
    return [], f"no --metric and {why}: the trials run unranked (--metric NAME ranks them)"


def _check_unranked(sampler: str, pruner: str) -> None:
    """Refuse an unranked sweep whose sampler or pruner needs the metric's values."""
    if sampler not in VALUE_FREE_SAMPLERS:
        raise SweeperError(
            "name the metric to optimize with --metric NAME (a key of the JSON lines the "
            "step prints), or set optimization-target-metric in a task of the step: the "
            f"{sampler} sampler learns from it (grid, random and qmc sweeps run "
            "without one)"
        )
    if pruner != "none":
        raise SweeperError(f"the {pruner} pruner compares a metric: name it with --metric NAME")


def _default_trials(sampler: str, space: SearchSpace, task: Task | None) -> int:
    """``--trials`` when not given: the grid's size, the manual sets, the execution-count."""
    if sampler == "grid" or space.grid is not None:
        size = space.grid_size or 1
        if sampler == "grid":  # lists given with -p are axes of the grid too
            for dist in space.distributions.values():
                if isinstance(dist, CategoricalDistribution):
                    size *= len(dist.choices)
        return size
    if space.parameter_sets:
        return len(space.parameter_sets)
    if task is not None and task.execution_count:
        return int(task.execution_count)
    raise SweeperError("say how many trials to run with --trials N")
