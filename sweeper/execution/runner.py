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
import queue
import shutil
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from sweeper.errors import SweeperError
from sweeper.execution.code import copy_tree_linked, extract_snapshot
from sweeper.execution.ids import new_execution_id
from sweeper.execution.inputs import InputFile, fetch_inputs
from sweeper.execution.metrics import MetricsCollector
from sweeper.execution.spec import MASK, ExecutionSpec
from sweeper.record import ExecutionRecord, MetricEvent
from sweeper.runtime import RunRequest, Runtime
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
    """Where an execution belongs: its sweep trial or pipeline node, and its attempt."""

    sweep_id: str | None = None
    trial_number: int | None = None
    pipeline_run_id: str | None = None
    node: str | None = None
    attempt: int = 1
    ray_node: str | None = None
    gpu_ids: tuple[str, ...] = ()


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
        sweep_id=context.sweep_id,
        trial_number=context.trial_number,
        pipeline_run_id=context.pipeline_run_id,
        node=context.node,
        ray_node=context.ray_node,
        gpu_ids=tuple(context.gpu_ids),
        attempt=context.attempt,
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
    """Lets another thread stop a running execution and say why (``stopped`` or ``pruned``)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason = Status.STOPPED

    def stop(self, reason: Status | str = Status.STOPPED) -> None:
        """Ask the execution to stop; ``reason`` becomes its status."""
        self.reason = Status(reason)
        self.event.set()


class _LogSink:
    """Writes masked output lines to the log file and feeds the metrics collector."""

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

    def __call__(self, line: str) -> None:
        for secret in self.secrets:
            if secret in line:
                line = line.replace(secret, MASK)
        self.handle.write(line if line.endswith("\n") else line + "\n")
        self.handle.flush()
        if self.echo is not None:
            self.echo(line.rstrip("\n"))
        event = self.metrics.feed(line)
        if event is not None and self.on_metrics is not None:
            self.on_metrics(event)


class _Housekeeper:
    """Runs an executor's housekeeping on a thread of its own, in order, off the executions' path."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Callable[[], None]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def do(self, task: Callable[[], None]) -> None:
        """Run ``task`` soon, after those given before it."""
        self._queue.put(task)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="sweeper-housekeeping", daemon=True
                )
                self._thread.start()

    def wait(self) -> None:
        """Return once every task given so far has run."""
        self._queue.join()

    def _work(self) -> None:
        while True:
            task = self._queue.get()
            try:
                task()
            except Exception:  # a folder not removed or not made ahead: only a lost shortcut
                pass
            finally:
                self._queue.task_done()


class Executor:
    """Runs specs with one runtime and records them in one store.

    ``scratch_dir`` holds work folders and the per-node cache of code snapshots and
    downloaded inputs; it defaults to the store's (:meth:`RecordStore.scratch_dir`). With
    ``remove_in_background``, for a long-lived process that runs executions back to back
    (a sweep's actor), a thread of the executor removes a finished execution's work folder
    after :meth:`run` returns and makes the next one's ahead (its subfolders and linked
    repository, renamed into place when the next execution has the same code): call
    :meth:`wait_removed` before the process goes away.
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
        self._housekeeper = _Housekeeper() if remove_in_background else None
        self._counters: ThreadPoolExecutor | None = None
        self._spare_lock = threading.Lock()
        #: A work folder made ahead, empty but for its repository: (code archive, path).
        self._spare: tuple[str | None, Path] | None = None

    def wait_removed(self) -> None:
        """Return once the work folders of the executions that have ended are removed.

        The folder made ahead for the next execution is removed too.
        """
        if self._housekeeper is not None:
            self._housekeeper.wait()
            with self._spare_lock:
                spare, self._spare = self._spare, None
            if spare is not None:
                shutil.rmtree(spare[1], ignore_errors=True)

    def _ended(self, spec: ExecutionSpec, workdir: Path) -> None:
        """Remove an execution's work folder; in the background, also make the next one's."""
        if self._housekeeper is None:
            shutil.rmtree(workdir, ignore_errors=True)
            return
        archive = spec.code_archive
        self._housekeeper.do(lambda: shutil.rmtree(workdir, ignore_errors=True))
        self._housekeeper.do(lambda: self._make_spare(archive))

    def _make_spare(self, code_archive: str | None) -> None:
        with self._spare_lock:
            if self._spare is not None and self._spare[0] == code_archive:
                return
            old, self._spare = self._spare, None
        if old is not None:
            shutil.rmtree(old[1], ignore_errors=True)
        path = self.scratch / "work" / f".next-{new_execution_id()}"
        try:
            self._make_workdir(code_archive, path)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        with self._spare_lock:
            self._spare = (code_archive, path)

    def _take_spare(self, code_archive: str | None, workdir: Path) -> bool:
        """Rename the folder made ahead to ``workdir``; False when there is none for this code."""
        with self._spare_lock:
            spare, self._spare = self._spare, None
        if spare is None:
            return False
        if spare[0] == code_archive:
            try:
                os.rename(spare[1], workdir)
                return True
            except OSError:
                pass
        shutil.rmtree(spare[1], ignore_errors=True)
        return False

    def _make_workdir(self, code_archive: str | None, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        for sub in ("inputs", "outputs", "config"):
            (workdir / sub).mkdir(exist_ok=True)
        self._repository(code_archive, workdir / "repository")

    # -- preparing ---------------------------------------------------------------------

    def _repository(self, code_archive: str | None, dest: Path) -> None:
        if code_archive is None:
            dest.mkdir(parents=True, exist_ok=True)
            return
        extracted = self.scratch / "code" / code_archive
        if not extracted.exists():
            archive = self.scratch / "code" / f"{code_archive}.tar"
            if not archive.exists():
                archive.parent.mkdir(parents=True, exist_ok=True)
                part = archive.with_name(f".{archive.name}.{os.getpid()}.{threading.get_ident()}")
                if not self.store.has_blob(code_archive):
                    raise SweeperError(
                        f"the code snapshot {code_archive[:12]} is no longer in the store "
                        f"{self.store.location}: the execution cannot be reproduced"
                    )
                self.store.fetch_blob(code_archive, part)
                os.replace(part, archive)
            extract_snapshot(archive, extracted)
        copy_tree_linked(extracted, dest)

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
        context = context or ExecutionContext()
        stop = stop or StopToken()
        execution_id = execution_id or new_execution_id()
        workdir = self.scratch / "work" / execution_id
        record = planned_record(
            spec,
            execution_id,
            context,
            with_image=self.runtime.uses_images,
            host=socket.gethostname(),
        )
        # The counter (a lock and an fsync) is taken while the work folder is prepared,
        # except where a bad input must leave nothing behind, not even a number.
        counter = None if raise_bad_input else self._allocate_counter()
        try:
            try:
                files, image_digest = self._prepare(spec, workdir)
            except SweeperError as exc:
                if raise_bad_input:
                    raise
                if counter is not None:
                    record = replace(record, counter=counter.result())
                return self._finish_early(record, Status.ERROR, str(exc), on_record)
            identity_image = (image_digest or spec.image) if self.runtime.uses_images else None
            record = replace(
                record,
                inputs=tuple(
                    {
                        "name": f.name,
                        "uri": f.uri,
                        "path": f.path,
                        "sha256": f.sha256,
                        "size": f.size,
                        "producer_execution_id": f.producer_execution_id,
                    }
                    for f in files
                ),
                image_digest=image_digest,
                spec_hash=spec.spec_hash(
                    [(f.name, f.path, f.sha256) for f in files], identity_image
                ),
                counter=self.store.allocate_counter() if counter is None else counter.result(),
            )
            if reuse and record.spec_hash is not None:
                previous = self.store.find_completed(record.spec_hash)
                if previous is not None:
                    return self._reuse(record, previous, on_record)
            record = replace(record, status=Status.QUEUED)
            self._write_config(spec, workdir, files, record)
            return self._run(spec, record, workdir, stop, on_metrics, echo, on_record)
        finally:
            self._ended(spec, workdir)

    def _allocate_counter(self) -> Future[int]:
        """The store's next execution number, allocated on a thread of the executor."""
        if self._counters is None:
            self._counters = ThreadPoolExecutor(1, thread_name_prefix="sweeper-counter")
        return self._counters.submit(self.store.allocate_counter)

    def _prepare(self, spec: ExecutionSpec, workdir: Path) -> tuple[list[InputFile], str | None]:
        shutil.rmtree(workdir, ignore_errors=True)
        if not self._take_spare(spec.code_archive, workdir):
            self._make_workdir(spec.code_archive, workdir)
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
        status: Status,
        reason: str,
        on_record: Callable[[ExecutionRecord], None] | None,
    ) -> ExecutionRecord:
        counter = record.counter if record.counter is not None else self.store.allocate_counter()
        now = utc_now()
        record = record.finished(
            status, error=reason, ended_at=now, counter=counter, started_at=now, duration_s=0.0
        )
        return self._save(record, on_record)

    def _reuse(
        self,
        record: ExecutionRecord,
        previous: Mapping[str, Any],
        on_record: Callable[[ExecutionRecord], None] | None,
    ) -> ExecutionRecord:
        return self._save(reused_record(record, previous), on_record)

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
        request = RunRequest(
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
        )
        started = time.monotonic()
        status: Status
        with open(log_path, "a", encoding="utf-8", errors="replace") as handle:
            sink = _LogSink(handle, spec.secret_values(), metrics, on_metrics, echo)
            try:
                result = self.runtime.run(request, sink, stop.event)
                status, reason, exit_code = Status(result.status), result.reason, result.exit_code
            except SweeperError as exc:
                status, reason, exit_code = Status.CRASHED, str(exc), None
            except Exception as exc:  # infrastructure failure: record it, never lose the row
                status, reason, exit_code = Status.CRASHED, f"{type(exc).__name__}: {exc}", None
        if status == Status.STOPPED and stop.reason != Status.STOPPED:
            status = stop.reason
        outputs, skipped = self._collect_outputs(record.id, workdir / "outputs")
        if skipped:
            # The user who expected a file reads why it is missing where they look first.
            with open(log_path, "a", encoding="utf-8") as handle:
                for item in skipped:
                    handle.write(f"sweeper: output {item['path']} refused: {item['reason']}\n")
        if remote_log:
            self.store.put_log(record.id, log_path)
        record = record.finished(
            status,
            error=reason if status != Status.COMPLETE else None,
            ended_at=utc_now(),
            exit_code=exit_code,
            outputs=tuple(outputs),
            outputs_skipped=tuple(skipped),
            metrics=metrics.summary,
            metrics_dropped=metrics.dropped,
            duration_s=round(time.monotonic() - started, 6),
        )
        return self._save(record, on_record, metrics.events)  # rewrites execution.json too

    def _collect_outputs(
        self, execution_id: str, outputs: Path
    ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        """The outputs folder's regular files, stored; and what was skipped, with why."""
        collected: list[dict[str, Any]] = []
        skipped: list[dict[str, str]] = []
        root = outputs.resolve()
        for dirpath, dirnames, filenames in os.walk(outputs):
            dirnames.sort()
            # os.walk does not enter linked folders; say so rather than drop them unseen.
            for name in [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
                path = Path(dirpath) / name
                relative = path.relative_to(outputs).as_posix()
                skipped.append({"path": relative, "reason": _skip_reason(path, root) or "a link"})
            for name in sorted(filenames):
                path = Path(dirpath) / name
                relative = path.relative_to(outputs).as_posix()
                why = _skip_reason(path, root)
                if why is not None:
                    skipped.append({"path": relative, "reason": why})
                    continue
                sha256, size = self.store.put_file(path.resolve())
                collected.append(
                    {
                        "name": relative,
                        "path": relative,
                        "uri": f"datum://{sha256}",
                        "sha256": sha256,
                        "size": size,
                        "producer_execution_id": execution_id,
                    }
                )
        skipped.sort(key=lambda item: item["path"])
        return collected, skipped


def _skip_reason(path: Path, root: Path) -> str | None:
    """Why an entry of the outputs folder is not stored, or None for a file to store."""
    try:
        real = path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop, before Python 3.13
        return "a link that loops"
    if path.is_symlink():
        if not real.is_relative_to(root):
            return "it points outside the outputs folder"
        if not real.exists():
            return "a broken link"
    try:
        mode = real.stat().st_mode
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a link to a folder (links are not followed)"
    kinds = {stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket", stat.S_ISCHR: "a device"}
    kind = next((name for test, name in kinds.items() if test(mode)), "a special file")
    return f"{kind}, not a regular file"
