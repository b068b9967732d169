"""The Python API: what the ``sweep`` commands do, as functions that return records.

``sweeper.run("train")`` runs one execution of a step and returns its
:class:`~sweeper.execution.record.ExecutionRecord`, the same record ``sweep run --json``
prints; ``sweeper.rerun(execution_id)`` runs a recorded execution again as it ran.
``sweeper.run_sweep("train", trials=20, ...)`` sweeps a step on Ray and returns a frozen
:class:`SweepResult` (``.to_dict()`` is the ``sweep --json`` summary); ``resume_sweep``
continues a killed one. ``sweeper.run_pipeline("train-pipeline")`` runs a pipeline and
returns a frozen :class:`PipelineResult`; ``resume_pipeline`` continues a killed run. The
commands are thin wrappers over these functions, so both behave the same.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from sweeper.errors import StoreError, SweeperError
from sweeper.project import Project, project_from
from sweeper.runtime import DEFAULT_RUNTIME
from sweeper.status import Status

if TYPE_CHECKING:
    from sweeper.cluster.actors import ResourceShape, TrialHandle
    from sweeper.cluster.connect import ClusterInfo
    from sweeper.cluster.controller import Controller, Launch
    from sweeper.config import Step
    from sweeper.execution.record import ExecutionRecord, MetricEvent
    from sweeper.execution.runner import StopToken
    from sweeper.execution.spec import ExecutionSpec
    from sweeper.store import RecordStore
    from sweeper.sweep.engine import Progress, SweepOptions, SweepRunner

__all__ = [
    "NodeResult",
    "PipelineResult",
    "SweepResult",
    "TrialSummary",
    "rerun",
    "resume_pipeline",
    "resume_sweep",
    "run",
    "run_pipeline",
    "run_sweep",
]

Echo = Callable[[str], None]
OnRecord = Callable[["ExecutionRecord"], None]


def _as_texts(value: Any) -> list[str]:
    """A Python value as the texts ``-p NAME=VALUE`` would give (a list for a multiple one)."""
    values = value if isinstance(value, list | tuple) else [value]
    return [v if isinstance(v, str) else str(v) for v in values]


def _execute(
    project: Project,
    spec: ExecutionSpec,
    *,
    reuse: bool,
    echo: Echo | None,
    stop: StopToken | None,
    on_record: OnRecord | None,
    address: str | None = None,
) -> ExecutionRecord:
    """Run ``spec`` here, in this process; or, given a Ray ``address``, on that cluster.

    On a cluster the execution takes the path every cluster execution takes: the
    :class:`~sweeper.cluster.controller.Controller` runs it on a Ray actor, with a policy
    of one execution (:class:`_SingleRun`).
    """
    store = project.open_store(create=True)
    if address is not None:
        from sweeper.cluster.controller import Controller

        policy = _SingleRun(spec, reuse=reuse, stop=stop, echo=echo)
        Controller(store, address=address, runtime=spec.runtime).run(policy)
        assert policy.record is not None  # the controller re-raises when it has none
        policy.echo_log(store, final=True)
        if on_record is not None:
            on_record(policy.record)
        return policy.record
    from sweeper.execution.runner import Executor
    from sweeper.runtime import get_runtime

    executor = Executor(store, get_runtime(spec.runtime))
    return executor.run(
        spec, reuse=reuse, stop=stop, echo=echo, on_record=on_record, raise_bad_input=True
    )


class _SingleRun:
    """The :class:`~sweeper.cluster.controller.Policy` of ``sweep run --address``: one execution.

    Its log is echoed as it grows when the store is a local folder (else once it ended),
    and ``stop`` (Ctrl-C in ``sweep run``) stops it on its actor.
    """

    poll_metrics = False

    def __init__(
        self, spec: ExecutionSpec, *, reuse: bool, stop: StopToken | None, echo: Echo | None
    ) -> None:
        from sweeper.cluster.controller import Launch
        from sweeper.execution.runner import ExecutionContext

        self.launch = Launch(key=0, spec=spec, context=ExecutionContext(), reuse=reuse)
        self.stop = stop
        self.echo = echo
        self.record: ExecutionRecord | None = None
        self._asked = False
        self._echoed = 0  # characters of the log echoed so far

    def shapes(self) -> Sequence[ResourceShape]:
        """The one execution's shape."""
        from sweeper.cluster.actors import ResourceShape

        return [ResourceShape.of(self.launch.spec)]

    def slots(self, cluster: ClusterInfo) -> int | None:
        """One at a time (there is only one)."""
        return 1

    def start(self, controller: Controller) -> None:
        """Nothing to create or recover: the execution's record is its whole state."""

    def ask(self, controller: Controller, free: int) -> list[Launch]:
        """The execution, once."""
        if self._asked:
            return []
        self._asked = True
        return [self.launch]

    def exhausted(self) -> bool:
        """Once the execution has started."""
        return self._asked

    def tick(self, controller: Controller) -> None:
        """Pass a stop on to the actor; echo the log lines written since the last turn."""
        if self.stop is not None and self.stop.event.is_set():
            # again each turn: a stop that reaches the actor before its run began is lost
            controller.stop(self.launch.key, self.stop.reason)
        self.echo_log(controller.store)

    def on_events(
        self, controller: Controller, handle: TrialHandle, events: list[MetricEvent]
    ) -> None:
        """Not called: no metric is polled."""

    def on_result(
        self, controller: Controller, handle: TrialHandle, record: ExecutionRecord
    ) -> None:
        """Keep the record."""
        self.record = record

    def end(self, controller: Controller, status: Status) -> Status:
        """The run's status as the controller saw it."""
        return status

    def echo_log(self, store: RecordStore, *, final: bool = False) -> None:
        """Echo the whole log lines not echoed yet (the rest too when ``final``)."""
        if self.echo is None:
            return
        execution_id = self.launch.execution_id
        path = store.log_file(execution_id)
        if path is None:  # a remote store: the log is uploaded when the execution ends
            data = (store.read_log(execution_id) or "").encode() if final else b""
        elif path.exists():
            with open(path, "rb") as handle:
                handle.seek(self._echoed)
                data = handle.read()
        else:
            data = b""
        if not final:
            data = data[: data.rfind(b"\n") + 1]  # a line still being written comes next turn
        self._echoed += len(data)
        for line in data.decode("utf-8", errors="replace").splitlines():
            self.echo(line)


def run(
    step: str,
    *,
    parameters: Mapping[str, Any] | None = None,
    inputs: Mapping[str, Sequence[str]] | None = None,
    environment: Mapping[str, str] | None = None,
    runtime: str = DEFAULT_RUNTIME,
    pull_policy: str = "missing",
    reuse: bool = False,
    config: str | os.PathLike[str] = "valohai.yaml",
    store: str | None = None,
    address: str | None = None,
    echo: Echo | None = None,
    stop: StopToken | None = None,
    on_record: OnRecord | None = None,
) -> ExecutionRecord:
    """Run one execution of ``step`` of the valohai.yaml ``config`` and return its final record.

    ``parameters`` are checked and typed like ``-p NAME=VALUE`` (a list for a multiple
    parameter); ``inputs`` maps an input name to its URIs, replacing the step's default. The
    project's files are snapshotted into ``store`` (default ``.sweeper/`` next to the
    valohai.yaml) and the step runs in ``runtime``: in this process, or with ``address``
    (``auto``, ``HOST:PORT``) on a Ray actor of that cluster, as a sweep's trials run. ``echo``
    sees each log line, ``on_record`` the record each time it is stored (on a cluster: the
    final one), and ``stop`` stops the execution from another thread. A failed step is a
    record with status ``error``; bad input (an unknown parameter, a missing input or image)
    raises :class:`~sweeper.errors.SweeperError` and runs nothing (on a cluster, an input or
    image the node cannot get is a record with status ``error``).
    """
    from sweeper.execution.inputs import resolve_inputs
    from sweeper.execution.spec import build_spec

    project = project_from(config, store)
    step_obj = project.config.get_step(step)
    values = step_obj.parse_parameter_values(
        {name: _as_texts(value) for name, value in (parameters or {}).items()}
    )
    uris = resolve_inputs(
        step_obj.inputs,
        {
            name: [uris] if isinstance(uris, str) else list(uris)
            for name, uris in (inputs or {}).items()
        },
        project_dir=project.directory,
    )
    opened = project.open_store(create=True)
    version, archive = project.snapshot_code(opened)
    spec = build_spec(
        step_obj,
        parameters=values,
        inputs=uris,
        code_version=version,
        code_archive=archive,
        project_dir=str(project.directory),
        runtime=runtime,
        environment=dict(environment or {}),
        pull_policy=pull_policy,
    )
    return _execute(
        project, spec, reuse=reuse, echo=echo, stop=stop, on_record=on_record, address=address
    )


def _recorded_step(record: ExecutionRecord) -> Step:
    """The step as the execution recorded it (its valohai.yaml may have changed since)."""
    from sweeper.config import parse_config

    definition = record.spec.get("step_definition")
    if not definition:
        raise SweeperError(f"execution {record.id} has no step definition to re-run")
    config = parse_config(
        yaml.safe_dump([{"step": dict(definition)}], sort_keys=False),
        filename=f"execution {record.id}",
    )
    return next(iter(config.steps.values()))


def rerun(
    execution: str,
    *,
    config: str | os.PathLike[str] = "valohai.yaml",
    store: str | None = None,
    echo: Echo | None = None,
    stop: StopToken | None = None,
    on_record: OnRecord | None = None,
) -> ExecutionRecord:
    """Run ``execution`` (an id, ``#counter`` or ``latest``) again as it ran; the new record.

    The re-run gets the recorded image digest, code snapshot, parameters and the inputs by
    checksum (from the store while it holds them, else from their URIs). Secret variables
    were never recorded and are left out. Raises :class:`~sweeper.errors.SweeperError` when
    the code snapshot is gone or an input read from its URI changed (the new record is
    stored all the same).
    """
    from sweeper.execution.record import ExecutionRecord
    from sweeper.execution.spec import ExecutionSpec
    from sweeper.runtime import get_runtime

    project = project_from(config, store)
    opened = project.open_store()
    record = ExecutionRecord.from_dict(opened.find_execution(execution))
    step_obj = _recorded_step(record)
    archive = record.spec.get("code_archive")
    if archive and not opened.has_blob(archive):
        raise SweeperError(
            f"execution {record.id} cannot be re-run: its code snapshot is no longer in the store"
        )
    inputs: dict[str, list[str]] = {}
    for item in record.inputs:
        uri = f"datum://{item['sha256']}" if opened.has_blob(item["sha256"]) else item["uri"]
        inputs.setdefault(item["name"], []).append(uri)
    spec = ExecutionSpec.from_record(
        record,
        project_dir=str(project.directory),
        inputs=inputs,
        step_inputs=tuple(step_obj.inputs),
    )
    step_runtime = get_runtime(spec.runtime)
    if step_runtime.uses_images and spec.image:
        step_runtime.resolve_image(spec.image, "never")  # the very image, or a clear error
    new = _execute(project, spec, reuse=False, echo=echo, stop=stop, on_record=on_record)
    for old, now in zip(record.inputs, new.inputs, strict=False):
        if old["sha256"] != now["sha256"]:
            raise SweeperError(
                f'input "{old["name"]}" changed since {record.id}: {old["uri"]} has a different checksum'
            )
    return new


# -- sweeps ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialSummary:
    """One trial of a sweep's result: its execution, objective value(s) and parameters."""

    execution_id: str | None
    trial_number: int
    value: float | None
    values: Mapping[str, float]
    parameters: Mapping[str, Any]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialSummary:
        """From a ``best`` entry of the ``sweep --json`` summary."""
        return cls(
            execution_id=data.get("execution_id"),
            trial_number=int(data["trial_number"]),
            value=data.get("value"),
            values=dict(data.get("values") or {}),
            parameters=dict(data.get("parameters") or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``best`` entry of the ``sweep --json`` summary."""
        return {
            "execution_id": self.execution_id,
            "trial_number": self.trial_number,
            "value": self.value,
            "values": dict(self.values),
            "parameters": dict(self.parameters),
        }


@dataclass(frozen=True)
class SweepResult:
    """How a sweep ended: ``to_dict()`` is the summary ``sweep --json`` prints.

    ``best`` is the best trial (one metric), the Pareto front (several metrics) or None (no
    metric, or no trial completed). ``failures`` group the failed trials by class and
    reason, ``failure_classes`` count them by class (oom, time_limit, user_error,
    infrastructure). ``reused`` counts the trials answered from the store (``reuse``);
    ``warm_start`` says what a warm start added and why the rest did not fit. ``failure``
    says why the sweep failed, when it did (too many failed trials, none completed); it is
    not part of the summary.
    """

    sweep_id: str
    status: Status
    counts: Mapping[str, int]
    best: TrialSummary | tuple[TrialSummary, ...] | None
    failures: tuple[Mapping[str, Any], ...] = ()
    failure: str | None = None
    failure_classes: Mapping[str, int] = field(default_factory=dict)
    reused: int = 0
    warm_start: Mapping[str, Any] | None = None

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any], failure: str | None = None) -> SweepResult:
        """From the summary :meth:`SweepRunner.run` returns."""
        best = summary.get("best")
        return cls(
            sweep_id=summary["sweep_id"],
            status=Status(summary["status"]),
            counts=dict(summary["trials"]),
            best=(
                TrialSummary.from_dict(best)
                if isinstance(best, Mapping)
                else tuple(TrialSummary.from_dict(t) for t in best)
                if isinstance(best, list | tuple)
                else None
            ),
            failures=tuple(dict(group) for group in summary.get("failures") or ()),
            failure=failure,
            failure_classes=dict(summary.get("failure_classes") or {}),
            reused=int(summary.get("reused") or 0),
            warm_start=summary.get("warm_start"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``sweep --json`` summary."""
        best: Any = self.best
        if isinstance(best, TrialSummary):
            best = best.to_dict()
        elif isinstance(best, tuple):
            best = [trial.to_dict() for trial in best]
        summary = {
            "sweep_id": self.sweep_id,
            "trials": dict(self.counts),
            "best": best,
            "failures": [dict(group) for group in self.failures],
            "failure_classes": dict(self.failure_classes),
            "reused": self.reused,
            "status": str(self.status),
        }
        if self.warm_start is not None:
            summary["warm_start"] = dict(self.warm_start)
        return summary


OnSweepStart = Callable[["SweepRunner"], None]
OnProgress = Callable[["Progress"], None]


def _start_ray(
    project: Project,
    address: str | None,
    *,
    step: str | None = None,
    task: str | None = None,
    pipeline: str | None = None,
) -> None:
    """Check the valohai.yaml and the names given, then begin Ray's start-up in the background.

    Ray takes seconds to start, much of them waiting for its own processes: the engine's
    imports, the search space, the code snapshot and the store are prepared meanwhile, and
    the controller's ``connect()`` waits for the start (and raises its error). A broken
    valohai.yaml or an unknown step, task or pipeline fails here, before Ray starts; a
    later error (a bad search space) ends the process without waiting for Ray.
    """
    from sweeper.cluster.connect import connect_in_background

    if step is not None:
        project.config.get_step(step)
    if task:
        project.config.get_task(task)
    if pipeline is not None:
        from sweeper.pipeline.graph import PipelineGraph

        PipelineGraph.build(project.config, pipeline)  # the runner's own check, its errors
    connect_in_background(address)


def _sweep(
    project: Project,
    options: SweepOptions,
    *,
    sweep_id: str | None = None,
    code: tuple[str, str | None] | None = None,
    on_start: OnSweepStart | None,
    on_progress: OnProgress | None,
) -> SweepResult:
    from sweeper.sweep.engine import SweepRunner

    store = project.open_store(create=True)
    version, archive = code or project.snapshot_code(store)
    runner = SweepRunner(
        config=project.config,
        store=store,
        project_dir=project.directory,
        options=options,
        code_version=version,
        code_archive=archive,
        sweep_id=sweep_id,
        resume=code is not None,
    )
    if on_start is not None:
        on_start(runner)
    summary = runner.run(on_progress=on_progress)
    return SweepResult.from_summary(summary, runner.failure)


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

    ``options`` are the fields of :class:`~sweeper.sweep.engine.SweepOptions`, named like
    the ``sweep`` command's options (``metrics=["accuracy"]``, ``parallel=2``,
    ``specs={"learning_rate": "log:1e-4..1", "epochs": 3}`` as ``-p`` takes them,
    ``runtime="local"``, ``address=...``).
    ``on_start`` sees the prepared runner (its search space, sweep id) before the first
    trial, ``on_progress`` each change. A sweep that fails (``max_failures``, no trial
    completed) returns a result with status ``failed`` and its ``failure``.
    """
    project = project_from(config, store)
    _start_ray(project, options.get("address"), step=step, task=options.get("task"))
    from sweeper.sweep.engine import SweepOptions

    if "specs" in options:  # as -p gives them: texts, a list only for several -p of one name
        options["specs"] = {name: _as_texts(spec) for name, spec in options["specs"].items()}
    sweep_options = SweepOptions(step=step, trials=trials, **options)
    return _sweep(project, sweep_options, on_start=on_start, on_progress=on_progress)


def resume_sweep(
    sweep_id: str | None = None,
    *,
    address: str | None = None,
    environment: Mapping[str, str] | None = None,
    config: str | os.PathLike[str] = "valohai.yaml",
    store: str | None = None,
    on_start: OnSweepStart | None = None,
    on_progress: OnProgress | None = None,
) -> SweepResult:
    """Continue a sweep to exactly its number of trials (default: the latest unfinished one).

    It runs with the options, code and search space it was started with; ``address`` moves
    it to another Ray cluster and ``environment`` gives again the secret variables, whose
    values were never saved.
    """
    from sweeper.execution.spec import MASK
    from sweeper.sweep.engine import SweepOptions

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
    if address:
        options.address = address
    options.environment.update(environment or {})
    masked = sorted(k for k, v in options.environment.items() if v == MASK)
    if masked:
        raise SweeperError(
            f"the sweep {sweep_id} was started with the secret variable(s) {', '.join(masked)}, "
            f"whose values are not saved: give them again, e.g. sweep resume {sweep_id} "
            + " ".join(f"-e {name}=VALUE" for name in masked)
        )
    _start_ray(project, options.address, step=options.step, task=options.task)
    code = (saved["code_version"], saved.get("code_archive"))
    return _sweep(
        project, options, sweep_id=sweep_id, code=code, on_start=on_start, on_progress=on_progress
    )


# -- pipelines ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeResult:
    """One node of a pipeline run: how it ended and the executions it ran.

    ``execution_id`` is the execution whose outputs flow downstream (a task node's best
    one); ``execution_ids`` every execution the node ran last (one per variant of a task).
    """

    name: str
    type: str
    status: Status
    execution_id: str | None
    execution_ids: tuple[str, ...] = ()
    best_execution_id: str | None = None
    reused_from: str | None = None
    error: str | None = None

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> NodeResult:
        """From a node of the ``pipeline run --json`` summary."""
        execution_id = data.get("execution_id")
        ids = data.get("execution_ids")
        return cls(
            name=name,
            type=str(data.get("type", "execution")),
            status=Status(data["status"]),
            execution_id=execution_id,
            execution_ids=tuple(ids)
            if ids is not None
            else ((execution_id,) if execution_id else ()),
            best_execution_id=data.get("best_execution_id"),
            reused_from=data.get("reused_from"),
            error=data.get("error"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The node as ``pipeline run --json`` prints it."""
        data: dict[str, Any] = {
            "status": str(self.status),
            "type": self.type,
            "execution_id": self.execution_id,
            "reused_from": self.reused_from,
        }
        if self.type == "task":
            data["execution_ids"] = list(self.execution_ids)
            data["best_execution_id"] = self.best_execution_id
        if self.error:
            data["error"] = self.error
        return data


@dataclass(frozen=True)
class PipelineResult:
    """How a pipeline run ended: ``to_dict()`` is the summary ``pipeline run --json`` prints.

    ``status`` is ``complete``, ``error``, ``stopped`` (an action stopped it) or
    ``interrupted``; ``error`` says why when it is not complete; ``nodes`` are by name, in
    the pipeline's order.
    """

    pipeline_run_id: str
    pipeline: str
    status: Status
    error: str | None
    nodes: Mapping[str, NodeResult]
    created_at: str | None = None
    updated_at: str | None = None

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any]) -> PipelineResult:
        """From the summary :meth:`PipelineRunner.run` returns."""
        return cls(
            pipeline_run_id=summary["pipeline_run_id"],
            pipeline=str(summary.get("pipeline")),
            status=Status(summary["status"]),
            error=summary.get("error"),
            nodes={
                name: NodeResult.from_dict(name, node)
                for name, node in (summary.get("nodes") or {}).items()
            },
            created_at=summary.get("created_at"),
            updated_at=summary.get("updated_at"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``pipeline run --json`` summary."""
        return {
            "pipeline_run_id": self.pipeline_run_id,
            "pipeline": self.pipeline,
            "status": str(self.status),
            "error": self.error,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "nodes": {name: node.to_dict() for name, node in self.nodes.items()},
        }


OnEvent = Callable[[str], None]


def run_pipeline(
    name: str,
    *,
    parameters: Mapping[str, Any] | None = None,
    inputs: Mapping[str, str | Sequence[str]] | None = None,
    environment: Mapping[str, str] | None = None,
    runtime: str = DEFAULT_RUNTIME,
    pull_policy: str = "missing",
    reuse: bool = False,
    max_retries: int = 1,
    address: str | None = None,
    config: str | os.PathLike[str] = "valohai.yaml",
    store: str | None = None,
    on_event: OnEvent | None = None,
) -> PipelineResult:
    """Run pipeline ``name`` of the valohai.yaml ``config`` on Ray, as ``sweep pipeline run``.

    ``parameters`` are pipeline parameters (``NAME``) or a node's (``NODE.PARAM``), checked
    and typed like ``-p``; a list on a task node's parameter adds a grid axis. ``inputs``
    maps ``NODE.INPUT`` to its URIs. ``on_event`` sees a line per node start, execution end
    and node end. A node that fails is a result with status ``error``; a pipeline that
    cannot run (an unknown name, an edge that cannot be resolved) raises
    :class:`~sweeper.errors.SweeperError`.
    """
    project = project_from(config, store)
    _start_ray(project, address, pipeline=name)
    from sweeper.pipeline.runner import PipelineOptions, PipelineRunner

    options = PipelineOptions(
        pipeline=name,
        parameters={key: _as_texts(value) for key, value in (parameters or {}).items()},
        inputs={
            key: [uris] if isinstance(uris, str) else list(uris)
            for key, uris in (inputs or {}).items()
        },
        environment=dict(environment or {}),
        reuse=reuse,
        runtime=runtime,
        address=address,
        pull_policy=pull_policy,
        max_retries=max_retries,
    )
    opened = project.open_store(create=True)
    version, archive = project.snapshot_code(opened)
    runner = PipelineRunner(
        config=project.config,
        config_text=project.config_path.read_text(encoding="utf-8"),
        store=opened,
        project_dir=project.directory,
        options=options,
        code_version=version,
        code_archive=archive,
    )
    return PipelineResult.from_summary(runner.run(on_event=on_event))


def resume_pipeline(
    run_id: str = "latest",
    *,
    address: str | None = None,
    config: str | os.PathLike[str] = "valohai.yaml",
    store: str | None = None,
    on_event: OnEvent | None = None,
) -> PipelineResult:
    """Continue pipeline run ``run_id`` (or the latest) as ``sweep pipeline resume`` does.

    Completed nodes and executions are kept; what a killed driver left running runs again
    with the options and code the run was started with. ``address`` moves it to another
    Ray cluster.
    """
    from sweeper.pipeline.runner import PipelineRunner

    opened = project_from(config, store).open_store()
    runner = PipelineRunner.for_resume(opened, pipeline_run_id(opened, run_id), address=address)
    return PipelineResult.from_summary(runner.run(on_event=on_event))


def pipeline_run_id(store: RecordStore, ref: str) -> str:
    """The id of pipeline run ``ref``: an id, or ``latest`` (the newest run in ``store``)."""
    from sweeper.pipeline.state import latest_runs

    if ref != "latest":
        return ref
    runs = latest_runs(store)
    if not runs:
        raise StoreError(f"no pipeline run in the store {store.location}")
    return str(runs[0]["pipeline_run_id"])
