"""The sweep loop: Optuna asks, Ray actors run executions, metrics go back to Optuna.

K trials are in flight at once; each runs as one execution on a Ray actor that holds the
trial's resources. The Optuna study lives in a journal file inside the store, and every
trial's execution is written to the store by the actor that ran it, so a killed driver
loses nothing: ``resume`` re-tells finished executions the driver never heard about and
re-runs, with the same parameters, what was running.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
import ray
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from sweeper.cluster import recovery
from sweeper.cluster.actors import ActorPool, ResourceShape, TrialHandle
from sweeper.cluster.connect import ClusterInfo, connect
from sweeper.errors import SweeperError
from sweeper.execution.ids import new_execution_id
from sweeper.execution.inputs import resolve_inputs
from sweeper.execution.runner import ExecutionContext
from sweeper.execution.spec import MASK, ExecutionSpec, build_spec, is_secret_name
from sweeper.status import Status
from sweeper.sweep.choices import VALUE_FREE_SAMPLERS
from sweeper.sweep.failures import describe, failure_reason, read_log_tail, study_failures
from sweeper.sweep.policy import guess_direction
from sweeper.sweep.samplers import make_pruner, make_sampler
from sweeper.sweep.space import SearchSpace, resolve_space
from sweeper.sweep.state import (
    COUNTED_OUTCOMES,
    DEFAULT_OUTCOMES,
    SweepState,
    load_study,
    outcome_counts,
    study_storage,
    summarize,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: Sweeps at least this long compact the store's datasets when they end.
COMPACT_AFTER_TRIALS = 50
#: The study's name for the objective of a sweep without a metric (plots, dashboard).
UNRANKED = "unranked"
#: What an unranked sweep tells Optuna for every complete trial: Optuna completes a trial
#: only with a value, and a constant one ranks no trial above another.
UNRANKED_VALUE = 0.0


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


def _objective_values(record: dict[str, Any], metrics: list[str]) -> list[float] | None:
    values = []
    for name in metrics:
        value = record.get("metrics", {}).get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if not math.isfinite(float(value)):
            return None
        values.append(float(value))
    return values


class SweepRunner:
    """Runs (or resumes) one sweep of one step against a store and a Ray cluster."""

    def __init__(
        self,
        *,
        config: Any,
        store: Any,
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
        self._counts: dict[str, int] = {}
        self._best: Any = None
        #: Why the sweep stopped short of its trials, when it did (``--max-failures``).
        self.failure: str | None = None

    def _default_trials(self, task: Any | None) -> int:
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

    def _default_metrics(self, config: Any, task: Any | None) -> tuple[list[str], str | None]:
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
        storage = study_storage(self.store, self.sweep_id, self.options.storage)
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

    # -- the loop ----------------------------------------------------------------------

    def run(
        self,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        on_start: Callable[[ClusterInfo], None] | None = None,
    ) -> dict[str, Any]:
        """Run until ``trials`` trials have finished; return the summary (``sweep --json``)."""
        options = self.options
        assert options.trials is not None
        cluster = connect(options.address)
        probe = self._spec({})
        shape = ResourceShape.of(probe)
        cluster.check_fits(shape.cpus, shape.gpus)
        parallel = options.parallel or max(
            1, int(cluster.largest("CPU") // max(shape.cpus, 1e-9)) if shape.cpus else 1
        )
        if not self.resume:
            self.state.create(
                options.to_dict(probe.secret_names),
                self.code_version,
                self.code_archive,
                self.space.to_json(),
            )
        study = self._study()
        if not self.resume:
            for params in self.space.parameter_sets:
                study.enqueue_trial(params)
        self.store.write_rows("sweeps", [self._sweep_row(Status.RUNNING)])
        if on_start is not None:
            on_start(cluster)
        self._recover(study)
        # Counted here rather than re-read from the study on every loop (O(trials) each time).
        self._counts = {k: v for k, v in outcome_counts(study).items() if k != Status.RUNNING}
        self._best = self._best_value(study)
        pool = ActorPool(self.store.location, options.runtime, fresh_actors=options.fresh_actors)
        in_flight: dict[Any, TrialHandle] = {}
        started = time.monotonic()
        stop_all = False
        status = Status.COMPLETE
        try:
            while True:
                counts = self._counts
                done = sum(counts.get(k, 0) for k in COUNTED_OUTCOMES)
                failures = counts.get("error", 0)
                if options.max_failures is not None and failures > options.max_failures:
                    status = Status.FAILED
                    stop_all = True
                while (
                    not stop_all
                    and len(in_flight) < parallel
                    and done + len(in_flight) < options.trials
                ):
                    handle = self._launch(study, pool)
                    in_flight[handle.ref] = handle
                if stop_all or done + len(in_flight) >= options.trials:
                    pool.trim(keep=0)  # no more work for idle actors: give their resources back
                if on_progress is not None:
                    on_progress(
                        Progress(
                            self.sweep_id,
                            options.trials,
                            {**counts, "running": len(in_flight)},
                            self._best,
                            started,
                        )
                    )
                if not in_flight:
                    break
                ready, _ = ray.wait(
                    list(in_flight),
                    num_returns=1,
                    timeout=0.25 if options.pruner != "none" else 1.0,
                )
                if options.pruner != "none":
                    self._report_intermediate(study, in_flight.values())
                for ref in ready:
                    handle = in_flight.pop(ref)
                    stop_all = self._finish(study, pool, handle) or stop_all
                if stop_all:
                    for handle in in_flight.values():
                        handle.actor.stop.remote(Status.STOPPED)
            if status == Status.COMPLETE and not self._counts.get("complete"):
                status = Status.FAILED  # not one trial gave a result: the sweep did not do its job
        except KeyboardInterrupt:
            status = Status.INTERRUPTED
            for handle in in_flight.values():
                try:
                    handle.actor.stop.remote(Status.STOPPED)
                except Exception:
                    pass
            try:
                ray.wait(list(in_flight), num_returns=len(in_flight), timeout=30)
            except Exception:
                pass
            raise
        finally:
            pool.shutdown()
            summary = self.summary(study)
            self.state.update(status=status)
            best = summary.get("best")
            best_id = best.get("execution_id") if isinstance(best, dict) else None
            self.store.write_rows("sweeps", [self._sweep_row(status, best_id)])
            if options.trials >= COMPACT_AFTER_TRIALS:
                self._compact()
        summary["status"] = status
        if status == Status.FAILED:
            failed = self._counts.get("error", 0)
            if options.max_failures is not None and failed > options.max_failures:
                what = f"stopped after {failed} failed trials, more than --max-failures {options.max_failures}"
            else:
                finished = sum(
                    summary["trials"][k] for k in (Status.COMPLETE, Status.ERROR, Status.PRUNED)
                )
                what = f"failed: none of its {finished} finished trials completed"
            reasons = describe(study_failures(study))
            self.failure = (
                f"sweep {self.sweep_id} {what}{': ' + reasons if reasons else ''}. "
                f"`sweep ls --sweep {self.sweep_id} --status error` lists them"
            )
        return summary

    def _compact(self) -> None:
        """Merge the sweep's many small part files so that queries stay fast (readers see no change)."""
        for dataset in ("executions", "metrics", "artifacts"):
            try:
                self.store.compact(dataset)
            except SweeperError:
                pass  # another process is compacting it; its result serves us as well

    def _launch(self, study: optuna.Study, pool: ActorPool) -> TrialHandle:
        distributions = dict(self.space.distributions)
        for name, values in (self.space.grid or {}).items():
            distributions[name] = CategoricalDistribution(values)
        trial = study.ask(distributions)
        params = {**self.space.fixed, **trial.params}
        attempt = int(trial.user_attrs.get("attempt", 1))
        spec = self._spec(params)
        execution_id = new_execution_id()
        # attempt and retry_of were set when the retry was enqueued; the execution id is what
        # resume needs to find this trial's record.
        trial.set_user_attr("execution_id", execution_id)
        context = ExecutionContext(
            sweep_id=self.sweep_id, trial_number=trial.number, attempt=attempt
        )
        handle = pool.submit(
            trial,
            spec,
            execution_id,
            context,
            reuse=self.options.reuse,
            shape=ResourceShape.of(spec),
        )
        return handle

    def _report_intermediate(self, study: optuna.Study, handles: Any) -> None:
        pending = [(h, h.actor.take_events.remote()) for h in handles if not h.stopping]
        metric = self.options.metrics[0]
        for handle, ref in pending:
            try:
                events = ray.get(ref, timeout=5)
            except Exception:
                continue
            trial: optuna.Trial = handle.key
            for event in events:
                value = event["values"].get(metric)
                if (
                    isinstance(value, bool)
                    or not isinstance(value, (int, float))
                    or not math.isfinite(value)
                ):
                    continue
                trial.report(float(value), handle.reported_steps)
                handle.reported_steps += 1
            if handle.reported_steps and trial.should_prune():
                handle.stopping = True
                handle.actor.stop.remote(Status.PRUNED)

    def _finish(self, study: optuna.Study, pool: ActorPool, handle: TrialHandle) -> bool:
        """Tell Optuna how a trial ended; return True when the sweep must stop."""
        trial: optuna.Trial = handle.key
        try:
            record = ray.get(handle.ref)
            pool.release(handle)
        except Exception as exc:  # the actor or its node died: an infrastructure failure
            pool.release(handle, healthy=False)
            record = recovery.mark_crashed(
                self.store,
                handle.execution_id,
                f"the Ray actor running it died: {type(exc).__name__}",
                sweep_id=self.sweep_id,
            ).to_dict()
        status = record.get("status")
        if status == Status.CRASHED:
            # A retry is a new trial: the crashes so far travel with it in its user attrs.
            used = int(trial.user_attrs.get("crashes", 0))
            if used < self.options.max_retries:
                self._tell(study, trial, TrialState.FAIL, Status.CRASHED, record)
                study.enqueue_trial(
                    trial.params,
                    user_attrs={
                        "retry_of": trial.number,
                        "attempt": int(trial.user_attrs.get("attempt", 1)) + 1,
                        "crashes": used + 1,
                    },
                )
                return False
            self._tell(
                study,
                trial,
                TrialState.FAIL,
                Status.ERROR,
                record,
                reason=f"crashed {used + 1} times: {record.get('error')}",
            )
            return False
        if status == Status.PRUNED:
            self._tell(study, trial, TrialState.PRUNED, Status.PRUNED, record)
            return False
        if status != Status.COMPLETE:
            self._tell(
                study,
                trial,
                TrialState.FAIL,
                Status.ERROR if status == Status.ERROR else status or Status.ERROR,
                record,
            )
            return False
        values = _objective_values(record, self.options.metrics)
        if values is None:
            missing = [
                m
                for m in self.options.metrics
                if not isinstance(record.get("metrics", {}).get(m), (int, float))
            ]
            reason = f"the step never printed the metric {', '.join(missing) or self.options.metrics[0]} as a finite number"
            self._tell(study, trial, TrialState.FAIL, Status.ERROR, record, reason=reason)
            return False
        self._tell(study, trial, TrialState.COMPLETE, Status.COMPLETE, record, values=values)
        if self.stop_condition is not None:
            try:
                return bool(
                    self.stop_condition.evaluate(
                        record.get("metrics", {}), record.get("parameters", {})
                    )
                )
            except Exception:
                return False
        return False

    def _tell(
        self,
        study: optuna.Study,
        trial: optuna.Trial,
        state: TrialState,
        outcome: str,
        record: dict[str, Any],
        *,
        values: list[float] | None = None,
        reason: str | None = None,
    ) -> None:
        if outcome != DEFAULT_OUTCOMES.get(state):
            trial.set_user_attr("outcome", outcome)
        self._counts[outcome] = self._counts.get(outcome, 0) + 1
        if values is not None and len(values) == 1:
            better = self._best is None or (
                values[0] < self._best
                if self.options.directions[0] == "minimize"
                else values[0] > self._best
            )
            if better:
                self._best = values[0]
        elif values:
            self._best = self._counts.get("complete", 0)
        if state != TrialState.COMPLETE and state != TrialState.PRUNED:
            # worked out once, here, so that `sweep status` groups reasons without the logs
            execution_id = record.get("id")
            log_text = read_log_tail(self.store, str(execution_id)) if execution_id else ""
            trial.set_user_attr("reason", failure_reason(record, reason=reason, log_text=log_text))
        if state == TrialState.COMPLETE:
            study.tell(trial, values or [UNRANKED_VALUE])
        else:
            study.tell(trial, state=state)

    # -- recovery ----------------------------------------------------------------------

    def _recover(self, study: optuna.Study) -> None:
        """Settle trials left RUNNING by a killed driver: re-tell finished ones, re-run the rest."""
        for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            execution_id = frozen.user_attrs.get("execution_id")
            # settle: rows a killed writer never wrote are written, a container it left removed
            settled = recovery.settle(self.store, execution_id) if execution_id else None
            record = settled.to_dict() if settled is not None else None
            trial = optuna.Trial(study, frozen._trial_id)
            if record is not None and record.get("status") in (
                Status.COMPLETE,
                Status.ERROR,
                Status.PRUNED,
                Status.STOPPED,
            ):
                values = (
                    _objective_values(record, self.options.metrics)
                    if record.get("status") == Status.COMPLETE
                    else None
                )
                if values is not None:
                    self._tell(
                        study, trial, TrialState.COMPLETE, Status.COMPLETE, record, values=values
                    )
                elif record.get("status") == Status.PRUNED:
                    self._tell(study, trial, TrialState.PRUNED, Status.PRUNED, record)
                else:
                    reason = (
                        None
                        if record.get("status") != Status.COMPLETE
                        else "the step never printed the metric"
                    )
                    self._tell(study, trial, TrialState.FAIL, Status.ERROR, record, reason=reason)
                continue
            if settled is not None:
                recovery.crash(
                    self.store, settled, "the sweep driver stopped while it ran; re-run on resume"
                )
            trial.set_user_attr("outcome", Status.INTERRUPTED)
            study.tell(trial, state=TrialState.FAIL)
            study.enqueue_trial(
                frozen.params,
                user_attrs={
                    "retry_of": frozen.number,
                    "attempt": int(frozen.user_attrs.get("attempt", 1)) + 1,
                    "crashes": int(frozen.user_attrs.get("crashes", 0)),
                },
            )

    # -- results -----------------------------------------------------------------------

    def _best_value(self, study: optuna.Study) -> Any:
        if not self.options.metrics:
            return None
        try:
            if len(self.options.metrics) == 1:
                return study.best_value
            return len(study.best_trials)
        except ValueError:
            return None

    def summary(self, study: optuna.Study | None = None) -> dict[str, Any]:
        """The ``--json`` summary of the sweep."""
        study = study or load_study(self.store, self.sweep_id, self.options.storage)
        return summarize(study, self.sweep_id, self.options.metrics)
