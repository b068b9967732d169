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
import shutil
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from sweeper.errors import SweeperError
from sweeper.execution.code import copy_tree_linked, extract_snapshot
from sweeper.execution.ids import new_execution_id
from sweeper.execution.inputs import InputFile, fetch_inputs
from sweeper.execution.metrics import MetricsCollector
from sweeper.execution.spec import MASK, ExecutionSpec
from sweeper.runtime import RunRequest, Runtime
from sweeper.status import Status

#: Statuses after which an execution never changes again.
FINAL_STATUSES = frozenset({"complete", "error", "stopped", "crashed", "pruned"})


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


class Executor:
    """Runs specs with one runtime and records them in one store.

    ``scratch_dir`` holds work folders and the per-node cache of code snapshots and
    downloaded inputs; it defaults to a folder inside a local store, else the temp dir.
    """

    def __init__(self, store: Any, runtime: Runtime, *, scratch_dir: Path | None = None) -> None:
        self.store = store
        self.runtime = runtime
        if scratch_dir is None:
            local = store.local_path
            scratch_dir = (
                Path(local) / "tmp"
                if local is not None
                else Path(tempfile.gettempdir()) / "sweeper-scratch"
            )
        self.scratch = Path(scratch_dir)
        self.scratch.mkdir(parents=True, exist_ok=True)

    # -- preparing ---------------------------------------------------------------------

    def _repository(self, spec: ExecutionSpec, dest: Path) -> None:
        if spec.code_archive is None:
            dest.mkdir(parents=True, exist_ok=True)
            return
        extracted = self.scratch / "code" / spec.code_archive
        if not extracted.exists():
            archive = self.scratch / "code" / f"{spec.code_archive}.tar"
            if not archive.exists():
                archive.parent.mkdir(parents=True, exist_ok=True)
                part = archive.with_name(f".{archive.name}.{os.getpid()}.{threading.get_ident()}")
                if not self.store.has_blob(spec.code_archive):
                    raise SweeperError(
                        f"the code snapshot {spec.code_archive[:12]} is no longer in the store "
                        f"{self.store.location}: the execution cannot be reproduced"
                    )
                self.store.fetch_blob(spec.code_archive, part)
                os.replace(part, archive)
            extract_snapshot(archive, extracted)
        copy_tree_linked(extracted, dest)

    def _write_config(
        self, spec: ExecutionSpec, workdir: Path, files: list[InputFile], record: dict[str, Any]
    ) -> None:
        base = "/valohai" if spec.runtime == "docker" else str(workdir)
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
            "valohai.execution-id": record["id"],
            "valohai.execution-counter": record["counter"],
            "valohai.execution-step": spec.step,
            "valohai.execution-image": spec.image,
            "valohai.execution-commit": spec.code_version,
        }
        (config / "execution.json").write_text(json.dumps(execution))

    # -- running -----------------------------------------------------------------------

    def execute(
        self,
        spec: ExecutionSpec,
        *,
        execution_id: str | None = None,
        context: ExecutionContext | None = None,
        reuse: bool = False,
        stop: StopToken | None = None,
        on_metrics: Callable[[dict[str, Any]], None] | None = None,
        echo: Callable[[str], None] | None = None,
        on_record: Callable[[dict[str, Any]], None] | None = None,
        raise_bad_input: bool = False,
    ) -> dict[str, Any]:
        """Run ``spec`` to its end and return the final record.

        With ``raise_bad_input`` a problem found before anything ran (an unreadable input,
        a missing image) raises :class:`SweeperError` and leaves nothing behind; otherwise it
        is recorded as a failed execution, which is what a sweep or pipeline wants.
        """
        context = context or ExecutionContext()
        stop = stop or StopToken()
        execution_id = execution_id or new_execution_id()
        workdir = self.scratch / "work" / execution_id
        record: dict[str, Any] = {
            "id": execution_id,
            "counter": None,
            "step": spec.step,
            "status": "created",
            "exit_code": None,
            "error": None,
            "command": list(spec.commands),
            "image": spec.image if spec.runtime == "docker" else None,
            "image_digest": None,
            "code_version": spec.code_version,
            "parameters": dict(spec.parameters),
            "metrics": {},
            "metrics_dropped": 0,
            "inputs": [],
            "outputs": [],
            "outputs_skipped": [],
            "created_at": utc_now(),
            "started_at": None,
            "ended_at": None,
            "duration_s": None,
            "runtime": spec.runtime,
            "reused_from": None,
            "sweep_id": context.sweep_id,
            "trial_number": context.trial_number,
            "pipeline_run_id": context.pipeline_run_id,
            "node": context.node,
            "ray_node": context.ray_node,
            "gpu_ids": list(context.gpu_ids),
            "attempt": context.attempt,
            "host": socket.gethostname(),
            "spec_hash": None,
            "environment": spec.masked_environment(),
            "resources": spec.resources(),
            "spec": spec.to_record(),
        }
        try:
            try:
                files, image_digest = self._prepare(spec, workdir)
            except SweeperError as exc:
                if raise_bad_input:
                    raise
                return self._finish_early(record, "error", str(exc), on_record)
            record["inputs"] = [
                {
                    "name": f.name,
                    "uri": f.uri,
                    "path": f.path,
                    "sha256": f.sha256,
                    "size": f.size,
                    "producer_execution_id": f.producer_execution_id,
                }
                for f in files
            ]
            record["image_digest"] = image_digest
            identity_image = (image_digest or spec.image) if self.runtime.uses_images else None
            record["spec_hash"] = spec.spec_hash(
                [(f.name, f.path, f.sha256) for f in files], identity_image
            )
            record["counter"] = self.store.allocate_counter()
            if reuse:
                previous = self.store.find_completed(record["spec_hash"])
                if previous is not None:
                    return self._reuse(record, previous, on_record)
            record["status"] = "queued"
            self._write_config(spec, workdir, files, record)
            return self._run(spec, record, workdir, stop, on_metrics, echo, on_record)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _prepare(self, spec: ExecutionSpec, workdir: Path) -> tuple[list[InputFile], str | None]:
        shutil.rmtree(workdir, ignore_errors=True)
        for sub in ("inputs", "outputs", "config"):
            (workdir / sub).mkdir(parents=True, exist_ok=True)
        self._repository(spec, workdir / "repository")
        files = fetch_inputs(
            spec.inputs,
            spec.step_inputs,
            inputs_dir=workdir / "inputs",
            project_dir=Path(spec.project_dir),
            cache_dir=self.scratch / "input-cache",
            store=self.store,
        )
        digest = None
        if spec.runtime == "docker" and spec.image:
            digest = self.runtime.resolve_image(spec.image, spec.pull_policy)
        return files, digest

    def _save(
        self, record: dict[str, Any], on_record: Callable[[dict[str, Any]], None] | None
    ) -> None:
        self.store.write_json(f"{self.store.execution_dir(record['id'])}/execution.json", record)
        if on_record is not None:
            on_record(dict(record))

    def _finish_early(
        self,
        record: dict[str, Any],
        status: str,
        reason: str,
        on_record: Callable[[dict[str, Any]], None] | None,
    ) -> dict[str, Any]:
        if record["counter"] is None:
            record["counter"] = self.store.allocate_counter()
        now = utc_now()
        record.update(status=status, error=reason, started_at=now, ended_at=now, duration_s=0.0)
        self.store.write_execution(record, [])
        if on_record is not None:
            on_record(dict(record))
        return record

    def _reuse(
        self,
        record: dict[str, Any],
        previous: Mapping[str, Any],
        on_record: Callable[[dict[str, Any]], None] | None,
    ) -> dict[str, Any]:
        now = utc_now()
        record.update(
            status="complete",
            exit_code=previous.get("exit_code", 0),
            metrics=dict(previous.get("metrics") or {}),
            outputs=list(previous.get("outputs") or []),
            outputs_skipped=list(previous.get("outputs_skipped") or []),
            reused_from=previous.get("reused_from") or previous["id"],
            started_at=now,
            ended_at=now,
            duration_s=0.0,
        )
        self.store.write_execution(record, [])
        if on_record is not None:
            on_record(dict(record))
        return record

    def _run(
        self,
        spec: ExecutionSpec,
        record: dict[str, Any],
        workdir: Path,
        stop: StopToken,
        on_metrics: Callable[[dict[str, Any]], None] | None,
        echo: Callable[[str], None] | None,
        on_record: Callable[[dict[str, Any]], None] | None,
    ) -> dict[str, Any]:
        metrics = MetricsCollector()
        log_path, remote_log = self._log_path(record["id"])
        record["status"] = "started"
        record["started_at"] = utc_now()
        self._save(record, on_record)
        environment = dict(spec.environment)
        request = RunRequest(
            execution_id=record["id"],
            commands=tuple(spec.commands),
            workdir=workdir,
            environment=environment,
            image=spec.image,
            cpus=spec.cpus,
            memory_mb=spec.memory_mb,
            gpu_ids=tuple(record["gpu_ids"]),
            time_limit_s=spec.time_limit_s,
            no_output_timeout_s=spec.no_output_timeout_s,
            pull_policy=spec.pull_policy,
            mounts=tuple(spec.mounts),
        )
        started = time.monotonic()
        with open(log_path, "a", encoding="utf-8", errors="replace") as handle:
            sink = _LogSink(handle, spec.secret_values(), metrics, on_metrics, echo)
            try:
                result = self.runtime.run(request, sink, stop.event)
                status, reason, exit_code = result.status, result.reason, result.exit_code
            except SweeperError as exc:
                status, reason, exit_code = Status.CRASHED, str(exc), None
            except Exception as exc:  # infrastructure failure: record it, never lose the row
                status, reason, exit_code = Status.CRASHED, f"{type(exc).__name__}: {exc}", None
        if status == Status.STOPPED and stop.reason != Status.STOPPED:
            status = stop.reason
        record["outputs"], skipped = self._collect_outputs(record["id"], workdir / "outputs")
        record["outputs_skipped"] = skipped
        if skipped:
            # The user who expected a file reads why it is missing where they look first.
            with open(log_path, "a", encoding="utf-8") as handle:
                for item in skipped:
                    handle.write(f"sweeper: output {item['path']} refused: {item['reason']}\n")
        if remote_log is not None:
            self.store.upload_file(log_path, remote_log)
        record.update(
            status=status,
            error=reason if status != "complete" else None,
            exit_code=exit_code,
            metrics=metrics.summary,
            metrics_dropped=metrics.dropped,
            ended_at=utc_now(),
            duration_s=round(time.monotonic() - started, 6),
        )
        self.store.write_execution(record, metrics.events)  # also rewrites execution.json
        if on_record is not None:
            on_record(dict(record))
        return record

    def _log_path(self, execution_id: str) -> tuple[Path, str | None]:
        relpath = f"{self.store.execution_dir(execution_id)}/logs.txt"
        local = self.store.local_path
        if local is not None:
            path = Path(local) / relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            return path, None
        path = self.scratch / "logs" / f"{execution_id}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path, relpath

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
