"""A sweep: Optuna asks, Ray actors run executions, metrics go back to Optuna.

:class:`SweepRunner` checks the options and builds the search space, the sampler and the
pruner; its :meth:`~SweepRunner.run` hands the trials to the one
:class:`~sweeper.cluster.controller.Controller` with a
:class:`~sweeper.sweep.policy.SweepPolicy` that decides them. K trials are in flight at once; each runs as one execution on a Ray actor that holds the
trial's resources. The Optuna study lives in a journal file inside the store, and every
trial's execution is written to the store by the actor that ran it, so a killed driver
loses nothing: ``resume`` re-tells finished executions the driver never heard about and
re-runs, with the same parameters, what was running.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution

from sweeper.cluster.connect import ClusterInfo
from sweeper.cluster.controller import Controller
from sweeper.config import Config, Task
from sweeper.errors import SweeperError
from sweeper.execution.ids import new_execution_id
from sweeper.execution.inputs import resolve_inputs
from sweeper.execution.spec import MASK, ExecutionSpec, build_spec, is_secret_name
from sweeper.record import guess_direction
from sweeper.status import Status
from sweeper.store import RecordStore
from sweeper.sweep import remote_study
from sweeper.sweep.choices import VALUE_FREE_SAMPLERS
from sweeper.sweep.failures import RESOURCE_CLASSES, describe, study_failures
from sweeper.sweep.history import resolve_sources
from sweeper.sweep.policy import SweepPolicy
from sweeper.sweep.samplers import make_pruner, make_sampler
from sweeper.sweep.space import SearchSpace, resolve_space
from sweeper.sweep.state import (
    COUNTED_OUTCOMES,
    SweepState,
    load_study,
    sole_driver,
    study_storage,
    summarize,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: The study's name for the objective of a sweep without a metric (plots, dashboard).
UNRANKED = "unranked"


@dataclass
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


@dataclass
class Progress:
    """A snapshot of a sweep for progress bars and ``sweep status``."""

    sweep_id: str
    total: int
    counts: dict[str, int]
    best_value: Any
    started: float

    @property
    def done(self) -> int:
        """Trials that count towards the total."""
        return sum(self.counts.get(k, 0) for k in COUNTED_OUTCOMES)


class SweepRunner:
    """Runs (or resumes) one sweep of one step against a store and a Ray cluster."""

    def __init__(
        self,
        *,
        config: Config,
        store: RecordStore,
        project_dir: Path,
        options: SweepOptions,
        code_version: str,
        code_archive: str | None,
        sweep_id: str | None = None,
        resume: bool = False,
    ) -> None:
        self.config = config
        self.store = store
        self.project_dir = project_dir
        self.options = options
        self.code_version = code_version
        self.code_archive = code_archive
        self.step = config.get_step(options.step)
        task = config.get_task(options.task) if options.task else None
        self.task = task
        if task is not None and task.step != self.step.name:
            raise SweeperError(
                f'task "{task.name}" is for step "{task.step}", not "{self.step.name}"'
            )
        #: A line for the user when the metric to rank by was not given on the command line.
        self.objective_note: str | None = None
        if not options.metrics and not resume:  # a resumed sweep keeps what it started with
            options.metrics, self.objective_note = self._default_metrics(config, task)
        if not options.directions:
            options.directions = [guess_direction(m) for m in options.metrics]
        if len(options.directions) != len(options.metrics):
            raise SweeperError(
                f"{len(options.metrics)} --metric but {len(options.directions)} --direction: give one direction per metric"
            )
        for direction in options.directions:
            if direction not in ("minimize", "maximize"):
                raise SweeperError(f'--direction must be minimize or maximize, not "{direction}"')
        self.space: SearchSpace = resolve_space(self.step, options.specs, task)
        # checked once here, as `sweep run` does: a bad --input is one error, not N failed trials
        self.inputs = resolve_inputs(self.step.inputs, options.inputs, project_dir=project_dir)
        if options.sampler is None:
            options.sampler = "grid" if self.space.grid is not None else "tpe"
        if not options.metrics:
            self._check_unranked(options)
        self.sampler = make_sampler(
            options.sampler, self.space, seed=options.seed, objectives=len(options.metrics)
        )
        if options.trials is None:
            options.trials = self._default_trials(task)
        if options.trials < 1:
            raise SweeperError("--trials must be at least 1")
        self.pruner = make_pruner(options.pruner, objectives=len(options.metrics))
        self.resume = resume
        self.sweep_id = sweep_id or new_execution_id()
        self.state = SweepState(store, self.sweep_id)
        self.stop_condition = task.stop_condition if task is not None else None
        #: The earlier sweeps ``--warm-start`` names, checked before anything starts.
        self.warm_sources: list[str] = (
            resolve_sources(store, self.step.name, options.warm_start, exclude=self.sweep_id)
            if options.warm_start and not resume
            else []
        )
        #: Why the sweep stopped short of its trials, when it did (``--max-failures``).
        self.failure: str | None = None
        self._storage: Any = None  # the study's storage, opened once (see _study)
        self._adopted = False

    def _default_trials(self, task: Task | None) -> int:
        """``--trials`` when not given: the grid's size, the manual sets, the execution-count."""
        if self.options.sampler == "grid" or self.space.grid is not None:
            size = self.space.grid_size or 1
            if self.options.sampler == "grid":  # lists given with -p are axes of the grid too
                for dist in self.space.distributions.values():
                    if isinstance(dist, CategoricalDistribution):
                        size *= len(dist.choices)
            return size
        if self.space.parameter_sets:
            return len(self.space.parameter_sets)
        if task is not None and task.execution_count:
            return int(task.execution_count)
        raise SweeperError("say how many trials to run with --trials N")

    def _default_metrics(self, config: Config, task: Task | None) -> tuple[list[str], str | None]:
        """The metric to rank by when ``--metric`` is not given, and a line saying why.

        The task's own optimization-target-metric; else the one the step's tasks name (a
        grid task usually names none while its Bayesian sibling does); else none, and the
        sweep runs unranked, as a Valohai grid or random search does.
        """
        if task is not None and task.optimization_target_metric:
            return [task.optimization_target_metric], None
        named: dict[str, list[str]] = {}
        for other in config.tasks.values():
            if other.step == self.step.name and other.optimization_target_metric:
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
            f"the tasks of step {self.step.name} name several ({', '.join(sorted(named))})"
            if named
            else f"no task of step {self.step.name} names an optimization-target-metric"
        )
        return [], f"no --metric and {why}: the trials run unranked (--metric NAME ranks them)"

    def _check_unranked(self, options: SweepOptions) -> None:
        """Refuse an unranked sweep whose sampler or pruner needs the metric's values."""
        if options.sampler not in VALUE_FREE_SAMPLERS:
            raise SweeperError(
                "name the metric to optimize with --metric NAME (a key of the JSON lines the "
                "step prints), or set optimization-target-metric in a task of the step: the "
                f"{options.sampler} sampler learns from it (grid, random and qmc sweeps run "
                "without one)"
            )
        if options.pruner != "none":
            raise SweeperError(
                f"the {options.pruner} pruner compares a metric: name it with --metric NAME"
            )

    @property
    def objective(self) -> str:
        """How the trials are ranked: ``minimize loss``, or ``unranked``."""
        pairs = zip(self.options.directions, self.options.metrics, strict=True)
        return ", ".join(f"{d} {m}" for d, m in pairs) or "unranked"

    # -- study -------------------------------------------------------------------------

    def _study(self) -> optuna.Study:
        if self._storage is None:  # the driver's (run holds the sweep's sole_driver lock)
            self._storage = study_storage(
                self.store, self.sweep_id, self.options.storage, writer=True
            )
        storage = self._storage
        # Optuna's study needs an objective: an unranked sweep has one that never varies.
        directions = self.options.directions or ["minimize"]
        names = list(self.options.metrics) or [UNRANKED]
        study = optuna.create_study(
            study_name=self.sweep_id,
            storage=storage,
            sampler=self.sampler,
            pruner=self.pruner,
            directions=directions,  # type: ignore[arg-type]
            load_if_exists=True,
        )
        if study.metric_names != names:
            with warnings.catch_warnings():  # experimental in Optuna, stable in practice
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # names the axes in plots and the dashboard ("loss", not "Objective 0")
                study.set_metric_names(names)
        if self.resume and not self._adopted and remote_study.is_copy(storage):
            # a journal copy can be behind the records, which are the truth
            self._adopted = True
            distributions = dict(self.space.distributions)
            for name, values in (self.space.grid or {}).items():
                distributions[name] = CategoricalDistribution(values)
            remote_study.adopt_executions(
                study, self.store, self.sweep_id, distributions, self.state.created_at
            )
        return study

    def _sweep_row(self, status: str, best_execution_id: str | None = None) -> dict[str, Any]:
        return {
            "sweep_id": self.sweep_id,
            "step": self.step.name,
            "sampler": self.options.sampler,
            "pruner": self.options.pruner,
            "metrics": list(self.options.metrics),
            "directions": list(self.options.directions),
            "search_space": self.space.to_json(),
            "seed": self.options.seed,
            "trials_asked": self.options.trials,
            "status": status,
            "best_execution_id": best_execution_id,
            "created_at": self.state.created_at,
            "updated_at": datetime.now(timezone.utc).isoformat(),
        }

    # -- specs -------------------------------------------------------------------------

    def _spec(self, params: dict[str, Any]) -> ExecutionSpec:
        return build_spec(
            self.step,
            parameters=params,
            inputs=self.inputs,
            code_version=self.code_version,
            code_archive=self.code_archive,
            project_dir=str(self.project_dir),
            runtime=self.options.runtime,
            environment=self.options.environment,
            cpus=self.options.cpus_per_trial,
            gpus=self.options.gpus_per_trial,
            pull_policy=self.options.pull_policy,
        )

    # -- the run -----------------------------------------------------------------------

    def run(
        self,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        on_start: Callable[[ClusterInfo], None] | None = None,
    ) -> dict[str, Any]:
        """Run until ``trials`` trials have finished; return the summary (``sweep --json``).

        The :class:`~sweeper.cluster.controller.Controller` runs the trials; the
        :class:`~sweeper.sweep.policy.SweepPolicy` decides what they are and what they mean.
        """
        options = self.options
        controller = Controller(
            self.store,
            address=options.address,
            runtime=options.runtime,
            fresh_actors=options.fresh_actors,
        )
        policy = SweepPolicy(self, on_progress=on_progress, on_start=on_start)
        # before Ray starts: a second driver of this sweep is refused at once
        with sole_driver(self.store, self.sweep_id):
            try:
                status = controller.run(policy)
            finally:
                remote_study.push(self._storage)  # the last state of a study in an object store
        summary = policy.summary
        summary["status"] = status
        warm = policy.warm_start or self.state.data.get("warm_start")
        if warm is not None:
            summary["warm_start"] = warm if isinstance(warm, dict) else warm.to_dict()
        if status is Status.FAILED:
            failed = policy.counted_failures()
            groups = study_failures(policy.study)
            if options.max_failures is not None and failed > options.max_failures:
                what = f"stopped after {failed} failed trials, more than --max-failures {options.max_failures}"
                # the failures the resources caused steer the search; they are not the cause
                groups = [g for g in groups if g.failure_class not in RESOURCE_CLASSES]
            else:
                finished = sum(summary["trials"][k] for k in Status.counted())
                what = f"failed: none of its {finished} finished trials completed"
            reasons = describe(groups)
            self.failure = (
                f"sweep {self.sweep_id} {what}{': ' + reasons if reasons else ''}. "
                f"`sweep ls --sweep {self.sweep_id} --status error` lists them"
            )
        return summary

    def summary(self, study: optuna.Study | None = None) -> dict[str, Any]:
        """The ``--json`` summary of the sweep."""
        study = study or load_study(self.store, self.sweep_id, self.options.storage)
        return summarize(study, self.sweep_id, self.options.metrics, self.options.directions)
