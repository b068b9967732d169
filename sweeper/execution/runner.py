"""Running one execution: work folder, inputs, the runtime, metrics, outputs, the record.

:class:`Executor` is the one place that turns an :class:`ExecutionSpec` into a finished
record in the store. It needs no Ray: ``sweep run`` calls it in-process, and the Ray actor
of a sweep or pipeline calls it on whichever node holds the resources.

Lifecycle: created -> queued -> started -> complete | error | stopped | crashed | pruned.
The record (``executions/<id>/execution.json``) is rewritten at each state; the Parquet
rows are appended once, when the execution has ended, so a finished execution is never
lost and an unfinished one is never counted.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from sweeper.errors import RuntimeUnavailableError, SweeperError
from sweeper.execution.distributed import write_distributed_config
from sweeper.execution.ids import new_execution_id
from sweeper.execution.inputs import InputFile, fetch_inputs, pin_latest
from sweeper.execution.metrics import MetricsCollector
from sweeper.execution.properties import RecordedOutputs, record_outputs
from sweeper.execution.spec import MASK, ExecutionSpec
from sweeper.execution.workdir import SnapshotMissingError, WorkFolders, collect_outputs
from sweeper.record import (
    OOM_BYTES_BACK,
    OOM_LINES_BACK,
    ExecutionRecord,
    FailureKind,
    MetricEvent,
    ResourceUse,
    says_out_of_memory,
)
from sweeper.runtime import RunRequest, RunResult, Runtime
from sweeper.status import Status
from sweeper.store import RecordStore

#: Statuses after which an execution never changes again (an alias of ``Status.final()``
#: for callers that still import it).
FINAL_STATUSES = Status.final()


def utc_now() -> str:
    """The current time as an ISO 8601 string in UTC."""
    return datetime.now(timezone.utc).isoformat()


@dataclass
class ExecutionContext:
    """Where an execution belongs: its sweep trial or pipeline node, and its attempt.

    Each field is the record field of the same name (see :func:`planned_record`).
    """

    sweep_id: str | None = None
    trial_number: int | None = None
    pipeline_run_id: str | None = None
    node: str | None = None
    #: A member of a distributed group: the ``distributed.json`` it is given.
    distributed: Mapping[str, Any] | None = None
    attempt: int = 1
    ray_node: str | None = None
    gpu_ids: tuple[str, ...] = ()
    #: A re-run by ``sweep verify``: the execution it verifies (see the record's field).
    verifies: Mapping[str, Any] | None = None


def planned_record(
    spec: ExecutionSpec,
    execution_id: str,
    context: ExecutionContext,
    *,
    with_image: bool,
    host: str | None = None,
) -> ExecutionRecord:
    """The record of an execution of ``spec`` about to run, created now.

    What the :class:`Executor` starts from, and what the driver records for an execution
    whose actor died before writing anything (its step, parameters and trial, at least).
    """
    return ExecutionRecord(
        id=execution_id,
        step=spec.step,
        command=tuple(spec.commands),
        image=spec.image if with_image else None,
        code_version=spec.code_version,
        parameters=dict(spec.parameters),
        created_at=utc_now(),
        runtime=spec.runtime,
        **{f.name: getattr(context, f.name) for f in fields(ExecutionContext)},
        host=host,
        environment=spec.masked_environment(),
        resources=spec.resources(),
        spec=spec.to_record(),
    )


def reused_record(record: ExecutionRecord, previous: Mapping[str, Any]) -> ExecutionRecord:
    """``record`` answered by ``previous``, a complete execution with the same spec hash:
    complete now, in no time, with the earlier one's exit code, metrics and outputs."""
    now = utc_now()
    return record.finished(
        Status.COMPLETE,
        error=None,
        ended_at=now,
        exit_code=previous.get("exit_code", 0),
        metrics=dict(previous.get("metrics") or {}),
        outputs=tuple(previous.get("outputs") or ()),
        outputs_skipped=tuple(previous.get("outputs_skipped") or ()),
        reused_from=previous.get("reused_from") or previous["id"],
        started_at=now,
        duration_s=0.0,
    )


class StopToken:
    """Lets another thread stop a running execution and say why (``stopped`` or ``pruned``,
    or a failure of a known ``kind``: a straggler is a ``time_limit``)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason = Status.STOPPED
        #: Why it was stopped, in words, for its record (a group member whose peer failed).
        self.message: str | None = None
        #: The failure it was stopped as (None: not a failure, ``reason`` is its status).
        self.kind: FailureKind | None = None

    def stop(
        self,
        reason: Status | str = Status.STOPPED,
        message: str | None = None,
        kind: FailureKind | str | None = None,
    ) -> None:
        """Ask the execution to stop; ``reason`` becomes its status, ``message`` its error;
        with ``kind`` it ends as an ``error`` of that failure class instead."""
        self.reason = Status(reason)
        self.message = message or self.message
        self.kind = FailureKind(kind) if kind is not None else self.kind
        self.event.set()

    def outcome(
        self, result: RunResult, out_of_memory: bool
    ) -> tuple[Status, str | None, FailureKind | None]:
        """The status, error and failure kind of a run that ended with ``result``."""
        status = Status(result.status)
        if status is Status.STOPPED and self.kind is not None:
            return Status.ERROR, self.message, self.kind
        if status is Status.STOPPED and self.reason != Status.STOPPED:
            status = self.reason
        error = result.reason if status != Status.COMPLETE else None
        if status is Status.STOPPED and self.message:
            error = self.message
        return status, error, run_failure(result, out_of_memory)


class _LogSink:
    """Writes masked output lines to the log file, feeds the metrics collector and notes
    the last line that says the step ran out of memory."""

    def __init__(
        self,
        handle: TextIO,
        secrets: list[str],
        metrics: MetricsCollector,
        on_metrics: Callable[[dict[str, Any]], None] | None,
        echo: Callable[[str], None] | None,
    ) -> None:
        self.handle = handle
        self.secrets = secrets
        self.metrics = metrics
        self.on_metrics = on_metrics
        self.echo = echo
        self.lines = 0
        self.chars = 0
        #: (lines, characters) written before the last out-of-memory line.
        self._oom_at: tuple[int, int] | None = None

    def __call__(self, line: str) -> None:
        for secret in self.secrets:
            if secret in line:
                line = line.replace(secret, MASK)
        text = line if line.endswith("\n") else line + "\n"
        self.handle.write(text)
        self.handle.flush()
        if says_out_of_memory(line):
            self._oom_at = (self.lines, self.chars)
        self.lines += 1
        self.chars += len(text)
        if self.echo is not None:
            self.echo(line.rstrip("\n"))
        event = self.metrics.feed(line)
        if event is not None and self.on_metrics is not None:
            self.on_metrics(event)

    @property
    def out_of_memory(self) -> bool:
        """Whether a line among the last the step printed says it ran out of memory
        (:data:`~sweeper.record.OOM_LINES_BACK` lines, about
        :data:`~sweeper.record.OOM_BYTES_BACK` bytes)."""
        if self._oom_at is None:
            return False
        lines, chars = self._oom_at
        return self.lines - lines <= OOM_LINES_BACK and self.chars - chars <= OOM_BYTES_BACK


def run_request(spec: ExecutionSpec, record: ExecutionRecord, workdir: Path) -> RunRequest:
    """What the runtime is asked to run for ``record``, an execution of ``spec``."""
    return RunRequest(
        execution_id=record.id,
        commands=tuple(spec.commands),
        workdir=workdir,
        environment=dict(spec.environment),
        image=spec.image,
        cpus=spec.cpus,
        memory_mb=spec.memory_mb,
        gpu_ids=record.gpu_ids,
        time_limit_s=spec.time_limit_s,
        no_output_timeout_s=spec.no_output_timeout_s,
        pull_policy=spec.pull_policy,
        mounts=tuple(spec.mounts),
        # a group's members reach each other at their node's address and reserved ports
        host_network=record.distributed is not None,
    )


def resource_use(spec: ExecutionSpec, record: ExecutionRecord, result: RunResult) -> ResourceUse:
    """What the run of ``record`` used: the runtime's figures, and GPU-seconds, the GPU share
    it held times the run's duration (0 for a step that asked for no GPU, None for one that
    asked and was given none: run outside a cluster, what it used is unknown)."""
    if not spec.gpus:
        gpu_s: float | None = 0.0
    elif not record.gpu_ids:
        gpu_s = None
    else:
        gpu_s = round(spec.gpus * (result.ended_at - result.started_at).total_seconds(), 3)
    return ResourceUse(result.cpu_s, result.peak_memory_mb, gpu_s)


def input_entries(files: Iterable[InputFile]) -> tuple[dict[str, Any], ...]:
    """The record's ``inputs``: one mapping per input file."""
    return tuple(
        {
            "name": f.name,
            "uri": f.uri,
            "path": f.path,
            "sha256": f.sha256,
            "size": f.size,
            "producer_execution_id": f.producer_execution_id,
        }
        for f in files
    )


def preparing_failure(exc: SweeperError) -> FailureKind:
    """The kind of a failure to prepare an execution (nothing of the step ran).

    The machinery's failures are ``infrastructure``: the runtime cannot have the image or
    reach its daemon, the store lost the code snapshot. The rest (an input that cannot be
    read, an unknown pull policy) are the user's to fix.
    """
    if isinstance(exc, (RuntimeUnavailableError, SnapshotMissingError)):
        return FailureKind.INFRASTRUCTURE
    return FailureKind.USER_ERROR


#: The kind of a failure a runtime reported without one, by the status it gave.
_KIND_OF_STATUS = {Status.ERROR: FailureKind.USER_ERROR, Status.CRASHED: FailureKind.INFRASTRUCTURE}


def run_failure(result: RunResult, out_of_memory: bool) -> FailureKind | None:
    """Why a run failed: the runtime's kind, unless the step printed that it ran out of
    memory among its last lines (an error whose cause was memory, whatever ended it);
    None for a run that did not fail."""
    status = Status(result.status)
    if status is Status.ERROR and out_of_memory:
        return FailureKind.OOM
    return result.failure_kind or _KIND_OF_STATUS.get(status)


def _log_outputs(
    log_path: Path, skipped: Iterable[Mapping[str, str]], recorded: RecordedOutputs
) -> None:
    """Say in the log what became of the outputs: the user who expected a file, a property
    or a dataset version reads why it is missing where they look first."""
    notes = [f"output {item['path']} refused: {item['reason']}" for item in skipped]
    notes += [f"warning: {text}" for text in recorded.warnings]
    notes += [f"made dataset version {made['uri']}" for made in recorded.dataset_versions]
    if notes:
        with open(log_path, "a", encoding="utf-8") as handle:
            handle.writelines(f"sweeper: {note}\n" for note in notes)


class Executor:
    """Runs specs with one runtime and records them in one store.

    ``scratch_dir`` holds work folders and the per-node cache of code snapshots and
    downloaded inputs; it defaults to the store's (:meth:`RecordStore.scratch_dir`). With
    ``remove_in_background``, for a long-lived process that runs executions back to back
    (a sweep's actor), a thread of the executor removes a finished execution's work folder
    after :meth:`run` returns and makes the next one's ahead (see
    :class:`~sweeper.execution.workdir.WorkFolders`): call :meth:`wait_removed` before the
    process goes away.
    """

    def __init__(
        self,
        store: RecordStore,
        runtime: Runtime,
        *,
        scratch_dir: Path | None = None,
        remove_in_background: bool = False,
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.scratch = Path(scratch_dir) if scratch_dir is not None else store.scratch_dir()
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.work_folders = WorkFolders(store, self.scratch, in_background=remove_in_background)
        #: The machine the executions run on, as their records say.
        self.host = socket.gethostname()
        self._counters: ThreadPoolExecutor | None = None

    def wait_removed(self) -> None:
        """Return once the work folders of the executions that have ended are removed.

        The folder made ahead for the next execution is removed too.
        """
        self.work_folders.wait_removed()

    # -- preparing ---------------------------------------------------------------------

    def _write_config(
        self, spec: ExecutionSpec, workdir: Path, files: list[InputFile], record: ExecutionRecord
    ) -> None:
        base = self.runtime.workdir_root(workdir)
        inputs: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for item in files:
            inputs.setdefault(item.name, {"files": []})["files"].append(
                {
                    "name": os.path.basename(item.path),
                    "path": f"{base}/inputs/{item.path}",
                    "size": item.size,
                    "uri": item.uri,
                    "sha256": item.sha256,
                    "checksums": {"sha256": item.sha256},
                }
            )
        config = workdir / "config"
        config.mkdir(parents=True, exist_ok=True)
        (config / "parameters.json").write_text(json.dumps(dict(spec.parameters), default=str))
        (config / "inputs.json").write_text(json.dumps(inputs))
        execution = {
            "valohai.execution-id": record.id,
            "valohai.execution-counter": record.counter,
            "valohai.execution-step": spec.step,
            "valohai.execution-image": spec.image,
            "valohai.execution-commit": spec.code_version,
        }
        (config / "execution.json").write_text(json.dumps(execution))
        if record.distributed is not None:
            write_distributed_config(config, record.distributed)

    # -- running -----------------------------------------------------------------------

    def run(
        self,
        spec: ExecutionSpec,
        *,
        execution_id: str | None = None,
        context: ExecutionContext | None = None,
        reuse: bool = False,
        stop: StopToken | None = None,
        on_metrics: Callable[[MetricEvent], None] | None = None,
        echo: Callable[[str], None] | None = None,
        on_record: Callable[[ExecutionRecord], None] | None = None,
        raise_bad_input: bool = False,
    ) -> ExecutionRecord:
        """Run ``spec`` to its end and return the final record.

        ``on_record`` sees the record each time it is stored (started, then final). With
        ``raise_bad_input`` a problem found before anything ran (an unreadable input, a
        missing image) raises :class:`SweeperError` and leaves nothing behind; otherwise it
        is recorded as a failed execution, which is what a sweep or pipeline wants.
        """
        execution_id = execution_id or new_execution_id()
        workdir = self.work_folders.path(execution_id)
        context = context or ExecutionContext()
        with_image = self.runtime.uses_images
        record = planned_record(spec, execution_id, context, with_image=with_image, host=self.host)
        # The counter (a lock and an fsync) is taken while the work folder is prepared,
        # except where a bad input must leave nothing behind, not even a number.
        counter = None if raise_bad_input else self._allocate_counter()
        try:
            try:
                spec, record = self._pinned(spec, record)
                files, image_digest = self._prepare(spec, workdir)
            except SweeperError as exc:
                if raise_bad_input:
                    raise
                return self._finish_early(record, counter, exc, on_record)
            record = self._identified(spec, record, files, image_digest, counter)
            if reuse and record.spec_hash is not None:
                previous = self.store.find_completed(record.spec_hash)
                if previous is not None:
                    return self._save(reused_record(record, previous), on_record)
            record = replace(record, status=Status.QUEUED)
            self._write_config(spec, workdir, files, record)
            return self._run(
                spec, record, workdir, stop or StopToken(), on_metrics, echo, on_record
            )
        finally:
            self.work_folders.ended(spec.code_archive, workdir)

    def _pinned(
        self, spec: ExecutionSpec, record: ExecutionRecord
    ) -> tuple[ExecutionSpec, ExecutionRecord]:
        """``spec`` and ``record`` with each ``dataset://NAME/latest`` input replaced by the
        version it means now, so the record names the version the execution reads."""
        pinned = pin_latest(spec.inputs, self.store)
        if pinned is None:
            return spec, record
        spec = replace(spec, inputs=pinned)
        return spec, replace(record, spec=spec.to_record())

    def _identified(
        self,
        spec: ExecutionSpec,
        record: ExecutionRecord,
        files: list[InputFile],
        image_digest: str | None,
        counter: Future[int] | None,
    ) -> ExecutionRecord:
        """``record`` with what identifies the execution: its inputs, image, spec hash, number."""
        identity_image = (image_digest or spec.image) if self.runtime.uses_images else None
        return replace(
            record,
            inputs=input_entries(files),
            image_digest=image_digest,
            spec_hash=spec.spec_hash([(f.name, f.path, f.sha256) for f in files], identity_image),
            counter=self.store.allocate_counter() if counter is None else counter.result(),
        )

    def _allocate_counter(self) -> Future[int]:
        """The store's next execution number, allocated on a thread of the executor."""
        if self._counters is None:
            self._counters = ThreadPoolExecutor(1, thread_name_prefix="sweeper-counter")
        return self._counters.submit(self.store.allocate_counter)

    def _prepare(self, spec: ExecutionSpec, workdir: Path) -> tuple[list[InputFile], str | None]:
        self.work_folders.prepare(spec.code_archive, workdir)
        files = fetch_inputs(
            spec.inputs,
            spec.step_inputs,
            inputs_dir=workdir / "inputs",
            project_dir=Path(spec.project_dir),
            cache_dir=self.scratch / "input-cache",
            store=self.store,
            staged=spec.staged_inputs,
        )
        # A runtime that ignores images resolves none (and answers None).
        digest = self.runtime.resolve_image(spec.image, spec.pull_policy) if spec.image else None
        return files, digest

    def _save(
        self,
        record: ExecutionRecord,
        on_record: Callable[[ExecutionRecord], None] | None,
        events: Iterable[MetricEvent] = (),
    ) -> ExecutionRecord:
        self.store.put_record(record, events)  # a final record gets its dataset rows too
        if on_record is not None:
            on_record(record)
        return record

    def _finish_early(
        self,
        record: ExecutionRecord,
        counter: Future[int] | None,
        exc: SweeperError,
        on_record: Callable[[ExecutionRecord], None] | None,
    ) -> ExecutionRecord:
        """Record an execution that failed before its step ran (``exc`` says why)."""
        now = utc_now()
        record = record.finished(
            Status.ERROR,
            error=str(exc),
            failure_kind=preparing_failure(exc),
            ended_at=now,
            counter=self.store.allocate_counter() if counter is None else counter.result(),
            started_at=now,
            duration_s=0.0,
        )
        return self._save(record, on_record)

    def _run(
        self,
        spec: ExecutionSpec,
        record: ExecutionRecord,
        workdir: Path,
        stop: StopToken,
        on_metrics: Callable[[MetricEvent], None] | None,
        echo: Callable[[str], None] | None,
        on_record: Callable[[ExecutionRecord], None] | None,
    ) -> ExecutionRecord:
        metrics = MetricsCollector()
        log_path = self.store.log_file(record.id)
        remote_log = log_path is None
        if log_path is None:  # a remote store: write a scratch file, upload it at the end
            log_path = self.scratch / "logs" / f"{record.id}.txt"
            log_path.parent.mkdir(parents=True, exist_ok=True)
        record = self._save(replace(record, status=Status.STARTED, started_at=utc_now()), on_record)
        started = time.monotonic()
        with open(log_path, "a", encoding="utf-8", errors="replace") as handle:
            sink = _LogSink(handle, spec.secret_values(), metrics, on_metrics, echo)
            result = self._run_step(run_request(spec, record, workdir), sink, stop)
        status, error, kind = stop.outcome(result, sink.out_of_memory)
        outputs, skipped = collect_outputs(self.store, record.id, workdir / "outputs")
        recorded = record_outputs(
            self.store, workdir / "outputs", outputs, complete=status is Status.COMPLETE
        )
        _log_outputs(log_path, skipped, recorded)
        if remote_log:
            self.store.put_log(record.id, log_path)
        record = record.finished(
            status,
            error=error,
            failure_kind=kind,
            ended_at=utc_now(),
            exit_code=result.exit_code,
            outputs=recorded.outputs,
            outputs_skipped=tuple(skipped),
            dataset_versions=recorded.dataset_versions,
            warnings=recorded.warnings,
            metrics=metrics.summary,
            metrics_dropped=metrics.dropped,
            duration_s=round(time.monotonic() - started, 6),
            usage=resource_use(spec, record, result),
        )
        return self._save(record, on_record, metrics.events)  # rewrites execution.json too

    def _run_step(self, request: RunRequest, sink: _LogSink, stop: StopToken) -> RunResult:
        """The runtime's result; a runtime that raises has crashed (the row is never lost)."""
        started_at = datetime.now(timezone.utc)
        try:
            return self.runtime.run(request, sink, stop.event)
        except SweeperError as exc:
            reason = str(exc)
        except Exception as exc:  # infrastructure failure: record it, never lose the row
            reason = f"{type(exc).__name__}: {exc}"
        return RunResult(
            Status.CRASHED,
            None,
            reason,
            started_at,
            datetime.now(timezone.utc),
            failure_kind=FailureKind.INFRASTRUCTURE,
        )
