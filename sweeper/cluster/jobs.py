"""Sweeps as Ray jobs: submit ``sweep ARGS`` to a cluster's job server, follow it, list the jobs.

The CLI's ``sweep submit`` and ``sweep jobs`` are thin wrappers over these functions; a
notebook can call them too. Ray's job SDK is imported on first use, so that importing this
module stays light.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shlex
import string
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from sweeper.errors import ClusterError

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

# How long a head that just started may answer "No available agent" before the job is refused.
AGENT_WAIT_S = 60
#: The store of a job submitted without ``--store``, on the head (see :func:`head_store`).
HEAD_STORE = "~/.sweeper/jobs/{job_id}/store"


@dataclass(frozen=True)
class JobInfo:
    """One Ray job as ``sweep jobs`` shows it (``to_dict`` is one row of ``sweep jobs --json``)."""

    job_id: str
    status: str
    started_at: str | None
    entrypoint: str
    message: str | None

    @property
    def succeeded(self) -> bool:
        """Whether the job ended with success."""
        return self.status == "SUCCEEDED"

    def to_dict(self) -> dict[str, str | None]:
        """The JSON row of ``sweep jobs --json``."""
        return {
            "job_id": self.job_id,
            "status": self.status,
            "started_at": self.started_at,
            "entrypoint": self.entrypoint,
            "message": self.message,
        }


def _first_line(exc: BaseException, fallback: str | None = None) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else (fallback or repr(exc))


def job_client(address: str) -> JobSubmissionClient:
    """A client of the job server at ``address`` (the dashboard, e.g. ``http://HEAD:8265``)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address.startswith("ray://"):
        raise ClusterError(
            f"{address} is a Ray client address: jobs go to the dashboard, e.g. http://HEAD:8265"
        )
    if "://" not in address:
        address = f"http://{address}"  # else the client would take it for a GCS address
    from ray.job_submission import JobSubmissionClient

    for name in ("ray.dashboard.modules.dashboard_sdk", "ray.dashboard.modules.job.sdk"):
        logging.getLogger(name).setLevel(logging.WARNING)  # "Uploading package ..." and the like
    try:
        return JobSubmissionClient(address)
    except Exception as exc:
        message = _first_line(exc, type(exc).__name__)
        if "authenticat" in message.lower():
            hint = (
                "the head requires its token: set RAY_AUTH_MODE=token and give the head's token "
                "in RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token"
            )
        else:
            hint = (
                "check that the head is running and the dashboard address (http://HEAD:8265); "
                "for a token-protected head set RAY_AUTH_MODE=token"
            )
        raise ClusterError(
            f"could not reach the Ray job server at {address}: {message.rstrip('.')}. {hint}"
        ) from None


def sweep_entrypoint(args: Sequence[str], python: str | None = None) -> str:
    """The job's shell command that runs ``sweep ARGS`` on the head."""
    sweep_args = shlex.join(args)
    if python:
        return f"{shlex.quote(python)} -m sweeper.cli.main {sweep_args}"
    # the console script where sweeper is installed on the head's PATH, else python3
    return (
        f"if command -v sweep >/dev/null 2>&1; then exec sweep {sweep_args}; "
        f"else exec python3 -m sweeper.cli.main {sweep_args}; fi"
    )


def has_store(args: Sequence[str]) -> bool:
    """Whether ``sweep ARGS`` names its store (``--store``)."""
    command = list(args)[: list(args).index("--")] if "--" in args else list(args)
    return any(a == "--store" or a.startswith("--store=") for a in command)


def head_store(job_id: str) -> str:
    """Where a job submitted without ``--store`` keeps its store on the head.

    ``~`` is the home of the user that runs Ray on the head: sweeper expands it there.
    """
    return HEAD_STORE.format(job_id=job_id)


def _with_store(args: Sequence[str], store: str) -> list[str]:
    """``args`` with ``--store STORE`` added before a ``--`` (or at the end)."""
    command = list(args)
    at = command.index("--") if "--" in command else len(command)
    return [*command[:at], "--store", store, *command[at:]]


def new_job_id() -> str:
    """A fresh submission id, in Ray's own form (``raysubmit_`` and 16 letters or digits)."""
    alphabet = string.ascii_letters + string.digits
    return "raysubmit_" + "".join(secrets.choice(alphabet) for _ in range(16))


def submit_sweep(
    project_dir: Path, args: Sequence[str], *, address: str, python: str | None = None
) -> str:
    """Submit ``sweep ARGS`` as a Ray job whose working directory is ``project_dir``; its id.

    ``python`` is the interpreter on the head that has sweeper installed (default: ``sweep``
    on the head's PATH, else ``python3``). Without ``--store`` in ARGS the job records into
    :func:`head_store` on the head (the job's working directory is a temporary copy that
    Ray deletes), which :func:`sweeper.cluster.pull.pull` brings to this machine.
    """
    client = job_client(address)
    runtime_env = {"working_dir": str(project_dir), "excludes": [".sweeper/", ".git/"]}
    metadata = {"sweeper": "1", "sweep_args": shlex.join(args)}
    command = list(args)
    job_id: str | None = None
    kept: str | None = None
    if not has_store(args):
        job_id = new_job_id()
        kept = head_store(job_id)
        command = _with_store(command, kept)
        metadata["head_store"] = kept
    if python:
        metadata["python"] = python  # the pull of its results runs there too
    deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        try:
            return client.submit_job(
                entrypoint=sweep_entrypoint(command, python),
                runtime_env=runtime_env,
                metadata=metadata,
                submission_id=job_id,
            )
        except Exception as exc:
            message = _first_line(exc)
            # a head that just started has no job agent yet: it answers 500 for a while
            if "No available agent" in message and time.monotonic() < deadline:
                time.sleep(2)
                continue
            raise ClusterError(
                f"the Ray job server at {address} refused the job: {message.rstrip('.')}"
            ) from None


def follow(
    address: str,
    job_id: str,
    write: Callable[[str], None],
    *,
    warn: Callable[[str], None] | None = None,
) -> JobInfo:
    """Stream the job's logs to ``write`` until it ends; the ended job.

    A broken log stream is reported to ``warn`` and the job is then waited for. ``KeyboardInterrupt``
    leaves the job running and propagates.
    """
    client = job_client(address)

    async def tail() -> None:
        async for lines in client.tail_job_logs(job_id):
            write(lines)

    try:
        try:
            asyncio.run(tail())
        except Exception as exc:  # the log stream broke: the job goes on, wait for it
            if warn is not None:
                warn(f"lost the job's log stream: {exc}")
        while not client.get_job_status(job_id).is_terminal():
            time.sleep(1)
        info = client.get_job_info(job_id)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        raise ClusterError(
            f"lost the Ray job server at {address} while following the job {job_id}: "
            f"{_first_line(exc)}"
        ) from None
    return _job_info(info, job_id)


def list_jobs(address: str) -> list[JobInfo]:
    """The jobs of the cluster at ``address``, oldest first (sweeps as ``sweep ARGS``)."""
    client = job_client(address)
    try:
        listed = client.list_jobs()
    except Exception as exc:
        raise ClusterError(
            f"the Ray job server at {address} failed to list the jobs: {_first_line(exc)}"
        ) from None
    listed.sort(key=lambda j: j.start_time or 0)
    # the pack jobs of `sweep jobs pull` are plumbing, not the user's jobs
    return [_job_info(job) for job in listed if (job.metadata or {}).get("sweeper") != "pull"]


def _job_info(job: object, job_id: str | None = None) -> JobInfo:
    """A :class:`JobInfo` from Ray's ``JobDetails``/``JobInfo``."""
    metadata = getattr(job, "metadata", None) or {}
    sweep_args = metadata.get("sweep_args")
    start_time = getattr(job, "start_time", None)
    started = (
        datetime.fromtimestamp(start_time / 1000, timezone.utc).isoformat(timespec="seconds")
        if start_time
        else None
    )
    status = getattr(job, "status", None)
    job_id = getattr(job, "submission_id", None) or getattr(job, "job_id", None) or job_id
    entrypoint = getattr(job, "entrypoint", "")
    return JobInfo(
        job_id=str(job_id),
        status=str(getattr(status, "value", status)),
        started_at=started,
        entrypoint=f"sweep {sweep_args}" if sweep_args is not None else entrypoint,
        message=getattr(job, "message", None),
    )
