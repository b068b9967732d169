"""How execution actors reach the store: directly, or through the driver when they cannot.

An object store (``s3://``, ``gs://``) is the same for every node, so actors open it
themselves. A local store path is only the driver's: a worker node on another machine would
open (or create) a different, empty folder there. For such nodes a :class:`StoreService`
actor pinned to the driver's node holds the driver's real store, and each actor on another
node gets a :class:`RemoteStore` that calls it: records, logs and metric rows travel as
small messages, blobs (the code snapshot, inputs, outputs) in chunks through Ray's object
store, never a whole file in memory.

Which actor needs which is decided where it starts (:meth:`StoreAccess.open`): the driver
writes a probe file with a random token into the store, and an actor that reads that token
at the store's path shares the driver's disk (same machine, or a network file system) and
opens the store directly; any other gets a :class:`RemoteStore`. Before the first execution
:func:`link_store` asks every alive node the same question, to say once which nodes do not
share the store. Nodes that join later (an autoscaler) decide for themselves the same way.

Example (the controller's side)::

    link = link_store(store, cluster)        # probes, starts the service when needed
    pool = ActorPool(link.access, "local")   # each actor calls link.access.open()
    spec = link.stage(spec)                  # local inputs put into the store, named by digest
    ...
    link.close()
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket
import tempfile
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from sweeper.errors import ClusterError, StoreError
from sweeper.execution.inputs import InputStager
from sweeper.execution.spec import ExecutionSpec
from sweeper.store import RecordStore, Store, hash_file

if TYPE_CHECKING:
    from sweeper.cluster.connect import ClusterInfo

P = ParamSpec("P")
R = TypeVar("R")

#: Bytes per message when a blob or a log travels between a node and the driver.
CHUNK = 4 << 20
#: Chunks in flight at once in one transfer (so at most WINDOW * CHUNK bytes in memory).
WINDOW = 4
#: How long the driver waits for every node to answer the probe.
PROBE_TIMEOUT_S = 60.0
#: Threads of the service: actors on many nodes write records at once.
SERVICE_CONCURRENCY = 32


class StoreNotSharedWarning(UserWarning):
    """The store path is not the same on every node: their records travel through the driver."""


# --------------------------------------------------------------------------- access


def _sees_probe(path: str, token: str) -> bool:
    """Whether this node reads ``token`` at ``path``: it shares the driver's store."""
    try:
        return Path(path).read_text() == token
    except OSError:
        return False


@dataclass(frozen=True)
class StoreAccess:
    """What an execution actor needs to open the run's store, on whichever node it is.

    ``location`` alone: open it directly (an object store, or one machine). With ``service``:
    open it directly when this node reads ``token`` in the ``probe`` file (a shared disk),
    else reach it through the driver's :class:`StoreService`. An actor never creates a store.
    """

    location: str
    service: Any = None
    probe: str | None = None
    token: str | None = None
    identity: str = ""

    def open(self) -> RecordStore:
        """The store as this node reaches it."""
        if self.service is None:
            return Store.open(self.location)
        if (
            self.probe is not None
            and self.token is not None
            and _sees_probe(self.probe, self.token)
        ):
            return Store.open(self.location)
        return RemoteStore(self.service, self.location, self.identity)


# --------------------------------------------------------------------------- the service


class StoreService:
    """The driver's store, served to execution actors on nodes that do not share its disk.

    Runs as a threaded, zero-CPU Ray actor pinned to the driver's node (see
    :func:`start_service`). Record-level calls go through :meth:`call`; blobs and logs
    arrive and leave in chunks of :data:`CHUNK` bytes.
    """

    def __init__(self, location: str) -> None:
        self.store = Store.open(location)
        local = self.store.local_path
        if local is None:  # an object store needs no service: every node reaches it
            raise StoreError(f"the store service serves local stores only, not {location}")
        self._uploads = self.store.scratch_dir() / "uploads"
        self._uploads.mkdir(parents=True, exist_ok=True)

    def identity(self) -> str:
        """The store's machine and folder: names the nodes' scratch folders for it."""
        return f"{socket.gethostname()}:{self.store.local_path}"

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """One of the :data:`FORWARDED` store methods, called on the driver's store."""
        if method not in FORWARDED:
            raise StoreError(f"the store service does not answer {method!r}")
        return getattr(self.store, method)(*args, **kwargs)

    # blobs leaving the driver

    def blob_size(self, sha256: str) -> int | None:
        """The size of a stored blob, or None when the store does not have it."""
        path = self.store.blob_local_path(sha256)
        return None if path is None else path.stat().st_size

    def read_blob(self, sha256: str, offset: int, length: int) -> bytes:
        """``length`` bytes of a blob from ``offset`` (fewer at its end)."""
        path = self.store.blob_local_path(sha256)
        if path is None:
            raise StoreError(f"unknown blob {sha256} in store {self.store.location}")
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read(length)

    # files arriving at the driver

    def begin_upload(self) -> str:
        """A new, empty upload; its id names it in the calls below."""
        upload = uuid.uuid4().hex
        (self._uploads / upload).touch()
        return upload

    def write_upload(self, upload: str, offset: int, data: bytes) -> None:
        """Write one chunk at its place (chunks may arrive in any order)."""
        fd = os.open(self._upload_path(upload), os.O_WRONLY)
        try:
            os.pwrite(fd, data, offset)
        finally:
            os.close(fd)

    def finish_blob(self, upload: str, sha256: str) -> tuple[str, int]:
        """Store an upload as a blob; (sha256, size), checked against the sender's digest."""
        path = self._upload_path(upload)
        try:
            stored, size = self.store.put_file(path)
        finally:
            path.unlink(missing_ok=True)
        if stored != sha256:
            raise StoreError(f"a file sent to the store arrived damaged ({sha256} != {stored})")
        return stored, size

    def finish_log(self, upload: str, execution_id: str) -> None:
        """Store an upload as an execution's log."""
        path = self._upload_path(upload)
        try:
            self.store.put_log(execution_id, path)
        finally:
            path.unlink(missing_ok=True)

    def abort_upload(self, upload: str) -> None:
        """Drop an upload that will not be finished."""
        self._upload_path(upload).unlink(missing_ok=True)

    def _upload_path(self, upload: str) -> Path:
        if not upload.isalnum():
            raise StoreError(f"invalid upload id {upload!r}")
        return self._uploads / upload


RemoteStoreService = ray.remote(StoreService)


def start_service(location: str) -> Any:
    """Start a :class:`StoreService` for ``location`` on this (the driver's) node."""
    node = ray.get_runtime_context().get_node_id()
    return RemoteStoreService.options(  # type: ignore[attr-defined]
        num_cpus=0,
        max_concurrency=SERVICE_CONCURRENCY,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False),
    ).remote(location)


# --------------------------------------------------------------------------- the client


def _get(ref: Any) -> Any:
    """``ray.get``, raising the service's own error (a StoreError, say) rather than Ray's wrapper."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, Exception):
            raise cause from None
        raise


def _sendable(value: Any) -> Any:
    """An argument as Ray can pickle it: mappings as dicts, other collections (a generator
    of events, rows, ids) as lists with their mappings as dicts; the rest as it is."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        return value
    return [dict(item) if isinstance(item, Mapping) else item for item in value]


#: The names :func:`_forward` made into :class:`RemoteStore` methods (see :data:`FORWARDED`).
_forwarded: set[str] = set()


def _forward(method: Callable[Concatenate[Any, P], R]) -> Callable[Concatenate[RemoteStore, P], R]:
    """A :class:`RemoteStore` method that asks the driver's store the same question.

    Typed as the :class:`RecordStore` method it forwards, so mypy checks every call, and
    that :class:`RemoteStore` still satisfies the protocol, as if it were written out.
    """
    name = method.__name__

    def forwarded(self: RemoteStore, /, *args: P.args, **kwargs: P.kwargs) -> R:
        sent = {key: _sendable(value) for key, value in kwargs.items()}
        return _get(self._service.call.remote(name, *map(_sendable, args), **sent))

    functools.update_wrapper(forwarded, method)  # its name, docstring and signature
    forwarded.__module__, forwarded.__qualname__ = __name__, f"RemoteStore.{name}"
    _forwarded.add(name)
    return forwarded


class RemoteStore:
    """A :class:`~sweeper.store.RecordStore` on a node that does not share the driver's disk.

    Every call goes to the driver's :class:`StoreService`: the record-level ones as they
    are (:data:`FORWARDED`), blobs and logs in chunks. Work folders and the caches of code
    snapshots and inputs stay on this node (:meth:`scratch_dir`), and logs are written there
    and sent when the execution ends (:meth:`log_file` is None, as for an object store).
    """

    def __init__(self, service: Any, location: str, identity: str = "") -> None:
        self._service = service
        self._location = location
        self._identity = identity or location

    def __repr__(self) -> str:
        return f"RemoteStore({self._location!r})"

    @property
    def location(self) -> str:
        """The store's path on the driver's machine."""
        return self._location

    @property
    def local_path(self) -> Path | None:
        """None: the store is not on this node."""
        return None

    # answered by the driver's store as they are (no local path involved)

    put_record = _forward(RecordStore.put_record)
    get_record = _forward(RecordStore.get_record)
    complete_rows = _forward(RecordStore.complete_rows)
    without_rows = _forward(RecordStore.without_rows)
    execution_ids = _forward(RecordStore.execution_ids)
    find_execution = _forward(RecordStore.find_execution)
    find_completed = _forward(RecordStore.find_completed)
    allocate_counter = _forward(RecordStore.allocate_counter)
    read_log = _forward(RecordStore.read_log)
    has_blob = _forward(RecordStore.has_blob)
    get_sweep = _forward(RecordStore.get_sweep)
    put_sweep = _forward(RecordStore.put_sweep)
    latest_sweep = _forward(RecordStore.latest_sweep)
    get_pipeline_run = _forward(RecordStore.get_pipeline_run)
    put_pipeline_run = _forward(RecordStore.put_pipeline_run)
    write_rows = _forward(RecordStore.write_rows)
    read_dataset = _forward(RecordStore.read_dataset)
    compact = _forward(RecordStore.compact)

    # held on the driver, or on this node

    def buffer_rows(self, interval_s: float) -> None:
        """Nothing to hold here: each record crosses to the driver's store as it is put."""

    def flush_rows(self) -> int:
        """Nothing is held here (see :meth:`buffer_rows`)."""
        return 0

    def fetch_sweep_journal(self, sweep_id: str, dest: str | os.PathLike[str]) -> bool:
        """Not served: a sweep's study belongs to its driver, never to a node's actor."""
        raise StoreError("the store service does not serve a sweep's study to nodes")

    def put_sweep_journal(self, sweep_id: str, local: str | os.PathLike[str]) -> None:
        """Not served (see :meth:`fetch_sweep_journal`)."""
        raise StoreError("the store service does not serve a sweep's study to nodes")

    def sweep_journal(self, sweep_id: str) -> Path:
        """Never on a node: the Optuna journal is the driver's."""
        raise StoreError(
            f"the sweep journal of {self._location} is on the driver's machine, not on this node"
        )

    def scratch_dir(self) -> Path:
        """A folder on this node for work folders and caches, one per store.

        Outside any store path, so that nothing here is mistaken for the driver's store.
        """
        key = hashlib.sha256(self._identity.encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / "sweeper-remote" / key

    # logs and blobs, in chunks

    def log_file(self, execution_id: str) -> Path | None:
        """None: write the log to a scratch file and :meth:`put_log` it."""
        return None

    def put_log(self, execution_id: str, local: Path) -> None:
        """Send a scratch log to the driver as the execution's logs.txt."""
        upload = self._upload(Path(local))
        _get(self._service.finish_log.remote(upload, execution_id))

    def put_file(self, path: str | os.PathLike[str]) -> tuple[str, int]:
        """Send a file's content to the driver's store unless it is there; (sha256, size)."""
        local = Path(path)
        sha256, size = hash_file(local)
        if self.has_blob(sha256):
            return sha256, size
        upload = self._upload(local)
        stored, stored_size = _get(self._service.finish_blob.remote(upload, sha256))
        return str(stored), int(stored_size)

    def fetch_blob(self, sha256: str, dest: str | os.PathLike[str]) -> None:
        """Copy a blob of the driver's store to a local file, checking its digest."""
        size = _get(self._service.blob_size.remote(sha256))
        if size is None:
            raise StoreError(f"unknown blob {sha256} in store {self._location}")
        target = Path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        digest = hashlib.sha256()
        pending: deque[Any] = deque()
        offset = 0
        try:
            with open(part, "wb") as out:
                while offset < size or pending:
                    while offset < size and len(pending) < WINDOW:
                        pending.append(self._service.read_blob.remote(sha256, offset, CHUNK))
                        offset += CHUNK
                    data = _get(pending.popleft())
                    digest.update(data)
                    out.write(data)
            if digest.hexdigest() != sha256:
                raise StoreError(f"blob {sha256} arrived from {self._location} damaged")
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)

    def blob_local_path(self, sha256: str) -> Path | None:
        """None: no blob of the driver's store is on this node."""
        return None

    def _upload(self, local: Path) -> str:
        """Send a local file to the service in chunks; the upload's id."""
        upload = str(_get(self._service.begin_upload.remote()))
        pending: deque[Any] = deque()
        try:
            with open(local, "rb") as handle:
                offset = 0
                while chunk := handle.read(CHUNK):
                    if len(pending) >= WINDOW:
                        _get(pending.popleft())
                    pending.append(self._service.write_upload.remote(upload, offset, chunk))
                    offset += len(chunk)
            while pending:
                _get(pending.popleft())
        except BaseException:
            self._service.abort_upload.remote(upload)
            raise
        return upload


#: The store methods the service answers as they are: those :class:`RemoteStore` forwards.
FORWARDED = frozenset(_forwarded)


# --------------------------------------------------------------------------- the driver's side


def probe_nodes(path: Path, token: str, node_ids: Sequence[str]) -> list[str]:
    """The nodes among ``node_ids`` that do not read ``token`` at ``path`` (or do not answer)."""
    check = ray.remote(num_cpus=0)(_sees_probe)
    refs = {
        node: check.options(  # type: ignore[attr-defined]
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False)
        ).remote(str(path), token)
        for node in node_ids
    }
    ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=PROBE_TIMEOUT_S)
    answered = set(ready)
    unshared = []
    for node, ref in refs.items():
        try:
            seen = ref in answered and bool(ray.get(ref))
        except Exception:  # a node that died while asked: it cannot use the store either
            seen = False
        if not seen:
            unshared.append(node)
    return unshared


def _alive_nodes() -> dict[str, str]:
    """Alive node ids, each with its address (for messages)."""
    return {
        str(n["NodeID"]): f"{n.get('NodeManagerAddress', '?')} (node {str(n['NodeID'])[:8]})"
        for n in ray.nodes()
        if n.get("Alive")
    }


@dataclass
class StoreLink:
    """The driver's end of a run: how actors reach the store, and the inputs it staged.

    ``unshared`` lists the nodes (their ids) that did not see the store when the run began.
    ``stager`` is set when local inputs must travel (the run is not on this machine alone).
    """

    store: RecordStore
    access: StoreAccess
    unshared: list[str] = field(default_factory=list)
    stager: InputStager | None = None
    _probe: Path | None = None

    def stage(self, spec: ExecutionSpec) -> ExecutionSpec:
        """``spec`` with its local input files put into the store and named by digest.

        Unchanged when the run is on this machine alone: the nodes read the files in place.
        """
        if self.stager is None:
            return spec
        staged = self.stager.stage(spec.inputs, spec.step_inputs, Path(spec.project_dir))
        return replace(spec, staged_inputs=staged) if staged else spec

    def close(self) -> None:
        """Stop the service and remove the probe file."""
        if self.access.service is not None:
            try:
                ray.kill(self.access.service)
            except Exception:  # already gone with its node: nothing to free
                pass
        if self._probe is not None:
            self._probe.unlink(missing_ok=True)


def link_store(store: RecordStore, cluster: ClusterInfo) -> StoreLink:
    """Decide how the actors of a run reach ``store``, before its first execution.

    An object store, or a local one on an embedded Ray (this machine only), is opened
    directly by every actor. A local store on a joined cluster gets a probe file and a
    :class:`StoreService`; the nodes that cannot read the probe are named once in a
    :class:`StoreNotSharedWarning`. Local inputs are staged into the store whenever the run
    is not on an embedded Ray, so that a node without the project folder can read them.
    """
    stager = None if cluster.embedded else InputStager(store)
    local = store.local_path
    if local is None or cluster.embedded:
        return StoreLink(store, StoreAccess(store.location), stager=stager)
    token = uuid.uuid4().hex
    probe = store.scratch_dir() / f"probe-{token}"
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text(token)
    nodes = _alive_nodes()
    unshared = probe_nodes(probe, token, list(nodes))
    service = start_service(str(local))
    try:
        identity = str(_get(service.identity.remote()))
    except Exception as exc:  # e.g. a ray:// client, whose Ray driver runs on the head
        probe.unlink(missing_ok=True)
        raise ClusterError(
            f"the store {store.location} cannot be opened on the Ray node of this driver "
            f"({exc}): give the sweep an object store (--store s3://...) or run the "
            "driver on the cluster (sweep submit)"
        ) from None
    access = StoreAccess(
        str(local), service=service, probe=str(probe), token=token, identity=identity
    )
    if unshared:
        names = ", ".join(sorted(nodes[node] for node in unshared))
        warnings.warn(
            f"the store {store.location} is not shared with node(s) {names}: "
            "their records, logs and files travel through the driver",
            StoreNotSharedWarning,
            stacklevel=2,
        )
    return StoreLink(store, access, unshared, stager, probe)


if TYPE_CHECKING:
    # mypy checks here that RemoteStore keeps every method of the contract, with its types.
    _satisfies_protocol: type[RecordStore] = RemoteStore
