"""``sweep jobs pull``: bring a submitted job's store from the head into a local store.

A job submitted without ``--store`` records into a store on the head
(:func:`sweeper.cluster.jobs.head_store`); the submitting machine usually shares no disk
with the head and reaches it only through the dashboard port (often a tunnel). So the
bytes travel over that port, in two Ray APIs made for it:

1. a small *pack job* (``sweep jobs pack``, hidden) runs on the head: it packs the store into
   one ``.tar.gz`` inside the head's Ray log folder and prints one line with the file's
   name, size and sha256;
2. the dashboard's log API (``GET /api/v0/logs/file``, what ``ray logs`` uses) streams any
   file of a node's log folder, in chunks, as raw bytes: the archive is downloaded with the
   job client's own credentials, checked against the size and sha256, and unpacked;
3. :meth:`sweeper.store.Store.merge` adds to the local store what it lacks (twice adds
   nothing); the pack job is then stopped, which deletes the archive (it deletes it itself
   after :data:`PACK_TTL_S` if nobody stops it).

Job logs are not used for the bytes: they are text, kept whole by the job server and read
whole by ``get_job_logs``.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeper.cluster.jobs import _first_line, job_client, sweep_entrypoint
from sweeper.errors import ClusterError

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

    from sweeper.store import Store

#: The pack job's line that says the archive is ready (then one JSON object).
READY = "sweeper-pull-ready "
#: The folder of the archives inside the head's Ray log folder.
PULL_DIR = "sweeper-pull"
#: A pack job nobody stops removes its archive and ends after this long.
PACK_TTL_S = 900
#: How long the pack job may take to start and pack before the pull gives up.
READY_WAIT_S = 600
#: The metadata that marks pack jobs (``sweep jobs`` leaves them out).
PACK_METADATA = "pull"


@dataclass(frozen=True)
class Pulled:
    """What a pull brought into the local store."""

    job_id: str
    head_store: str
    executions: int
    sweeps: int
    files: int
    size: int

    def describe(self) -> str:
        """One line for the user."""
        return (
            f"pulled job {self.job_id} from {self.head_store} on the head: "
            f"{self.executions} new executions, {self.sweeps} new sweeps, "
            f"{self.files} files ({self.size / 1e6:.1f} MB packed)"
        )


# -- on the head -----------------------------------------------------------------------


def _ray_log_dir() -> Path:
    """The head's Ray log folder: the folder of this job's own log file (its stdout)."""
    try:
        log_file = Path(os.readlink("/proc/self/fd/1"))
    except OSError:
        log_file = Path()
    if log_file.name.startswith("job-driver-") and log_file.parent.name == "logs":
        return log_file.parent
    raise ClusterError(
        "run `sweep jobs pack` as a Ray job on a Linux head: it writes next to the job's log"
    )


def _skip(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """Leave out work folders, locks, the counter and temporary files."""
    parts = Path(info.name).parts  # "./executions/X" -> ("executions", "X")
    if parts and parts[0] in ("tmp", "locks", "counter", "quarantine"):
        return None
    if any(part.startswith(".") for part in parts):
        return None
    return info


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(8 << 20):
            sha.update(chunk)
    return sha.hexdigest()


def serve_pack(store_dir: str, name: str, *, ttl_s: float = PACK_TTL_S) -> None:
    """Pack the store at ``store_dir`` for a pull and keep the archive until stopped.

    Runs on the head as the pack job. Prints :data:`READY` and the archive's
    ``{"filename", "size", "sha256"}``; removes the archive when the job is stopped (SIGTERM)
    or after ``ttl_s``.
    """
    root = Path(store_dir).expanduser()
    if not (root / "sweeper-store.json").is_file():
        raise ClusterError(
            f"no sweeper store at {root} on the head: the job recorded nothing there "
            "(it never started, or the head was replaced since)"
        )
    if "/" in name or name.startswith("."):
        raise ClusterError(f"invalid archive name {name!r}")
    folder = _ray_log_dir() / PULL_DIR
    folder.mkdir(exist_ok=True)
    target = folder / name
    partial = folder / f".{name}.partial"
    try:
        with tarfile.open(partial, "w:gz", compresslevel=1) as tar:
            tar.add(root, arcname=".", filter=_skip)
        os.replace(partial, target)
        ready = {
            "filename": f"{PULL_DIR}/{name}",
            "size": target.stat().st_size,
            "sha256": _digest(target),
        }
        print(READY + json.dumps(ready), flush=True)
        # `ray job stop` sends SIGTERM: leave through `finally`, which removes the archive
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        time.sleep(ttl_s)
    finally:
        partial.unlink(missing_ok=True)
        target.unlink(missing_ok=True)


# -- on the submitting machine ---------------------------------------------------------


def _job(client: JobSubmissionClient, address: str, job_id: str) -> Any:
    try:
        return client.get_job_info(job_id)
    except Exception as exc:
        message = _first_line(exc)
        if "404" in message or "does not exist" in message.lower():
            raise ClusterError(f"no job {job_id} on the Ray job server at {address}") from None
        raise ClusterError(
            f"the Ray job server at {address} failed to describe the job {job_id}: {message}"
        ) from None


def _wait_ready(client: JobSubmissionClient, pack_id: str) -> dict[str, Any]:
    """The archive line of the pack job, once it printed it (ClusterError if it failed)."""
    deadline = time.monotonic() + READY_WAIT_S
    while True:
        logs = client.get_job_logs(pack_id)
        for line in logs.splitlines():
            if line.startswith(READY):
                ready: dict[str, Any] = json.loads(line[len(READY) :])
                return ready
        status = client.get_job_status(pack_id)
        if status.is_terminal():
            errors = [line for line in logs.splitlines() if line.startswith("sweep: error:")]
            why = errors[-1].removeprefix("sweep: error: ") if errors else logs.strip()[-500:]
            raise ClusterError(f"packing the job's store on the head failed: {why}")
        if time.monotonic() > deadline:
            raise ClusterError(
                f"the pack job {pack_id} on the head was not ready after {READY_WAIT_S} s"
            )
        time.sleep(0.5)


def _download(client: JobSubmissionClient, node_id: str, ready: dict[str, Any], dest: Path) -> None:
    """Stream the archive from the node's log folder through the dashboard; check it."""
    import requests

    # the job client's own address, credentials (the Ray token) and TLS settings
    address = str(getattr(client, "_address", ""))
    params: dict[str, str | int] = {
        "node_id": node_id,
        "filename": str(ready["filename"]),
        "lines": -1,  # the whole file
        "timeout": 3600,
    }
    sha = hashlib.sha256()
    size = 0
    try:
        with requests.get(
            f"{address}/api/v0/logs/file",
            params=params,
            headers=getattr(client, "_headers", None),
            cookies=getattr(client, "_cookies", None),
            verify=getattr(client, "_verify", True),
            stream=True,
            timeout=120,
        ) as response:
            if response.status_code != 200:
                raise ClusterError(
                    f"the dashboard at {address} refused the archive: "
                    f"HTTP {response.status_code} {response.text[:300]}"
                )
            with open(dest, "wb") as out:
                for chunk in response.iter_content(chunk_size=1 << 20):
                    out.write(chunk)
                    sha.update(chunk)
                    size += len(chunk)
    except requests.RequestException as exc:
        raise ClusterError(f"the archive's download from {address} broke: {exc}") from None
    if size != ready["size"] or sha.hexdigest() != ready["sha256"]:
        raise ClusterError(
            f"the archive arrived damaged ({size} bytes of {ready['size']}, sha256 "
            f"{'matches' if sha.hexdigest() == ready['sha256'] else 'differs'}): pull again"
        )


def pull(
    address: str,
    job_id: str,
    store: Store,
    *,
    python: str | None = None,
    status: Callable[[str], None] | None = None,
) -> Pulled:
    """Bring the store a job kept on the head into ``store`` (see the module docstring).

    ``python`` is the head's interpreter with sweeper (default: the one the job was
    submitted with). ``status`` hears what is going on, one short line at a time.
    """
    client = job_client(address)
    info = _job(client, address, job_id)
    metadata = getattr(info, "metadata", None) or {}
    kept = _kept_store(info, metadata, job_id)
    say = status or (lambda _: None)
    say(f"packing {kept} on the head")
    name = f"{job_id}-{uuid.uuid4().hex[:8]}.tar.gz"
    try:
        pack_id = client.submit_job(
            entrypoint=sweep_entrypoint(
                ["jobs", "pack", kept, "--name", name], python or metadata.get("python")
            ),
            metadata={"sweeper": PACK_METADATA, "pulls": job_id},
        )
    except Exception as exc:
        raise ClusterError(
            f"the Ray job server at {address} refused the pack job: {_first_line(exc)}"
        ) from None
    try:
        return _merge_pack(client, pack_id, store, say, job_id=job_id, head_store=kept)
    finally:
        try:
            client.stop_job(pack_id)  # its `finally` removes the archive on the head
        except Exception:
            pass  # it removes the archive itself after PACK_TTL_S


def _kept_store(info: Any, metadata: dict[str, Any], job_id: str) -> str:
    """Where on the head an ended `sweep submit` job kept its store; else why it cannot be pulled."""
    kept = metadata.get("head_store")
    if not kept:
        if metadata.get("sweeper"):
            raise ClusterError(
                f"the job {job_id} was submitted with --store ({metadata.get('sweep_args')}): "
                "its results are in that store; open it with --store"
            )
        raise ClusterError(f"the job {job_id} was not submitted by `sweep submit`")
    state = getattr(info, "status", None)
    if state is None or not state.is_terminal():
        raise ClusterError(
            f"the job {job_id} is {getattr(state, 'value', state)}: pull it once it has ended "
            "(`sweep submit --follow` pulls when the job ends)"
        )
    return str(kept)


def _merge_pack(
    client: JobSubmissionClient,
    pack_id: str,
    store: Store,
    say: Callable[[str], None],
    *,
    job_id: str,
    head_store: str,
) -> Pulled:
    """Wait for the pack job's archive, download and unpack it, merge that store into
    ``store``; what the merge brought in."""
    from sweeper.store import Store

    ready = _wait_ready(client, pack_id)
    node_id = getattr(client.get_job_info(pack_id), "driver_node_id", None)
    if not node_id:
        raise ClusterError(f"the job server did not say where the pack job {pack_id} ran")
    with tempfile.TemporaryDirectory(prefix="sweeper-pull-") as tmp:
        archive = Path(tmp) / "store.tar.gz"
        say(f"downloading {ready['size'] / 1e6:.1f} MB")
        _download(client, node_id, ready, archive)
        staged = Path(tmp) / "store"
        with tarfile.open(archive) as tar:
            tar.extractall(staged, filter="data")
        counts = store.merge(Store.open(staged))
    return Pulled(
        job_id=job_id,
        head_store=head_store,
        executions=counts.executions,
        sweeps=counts.sweeps,
        files=counts.files,
        size=int(ready["size"]),
    )
