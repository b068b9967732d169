"""Endpoint files pinned by sha256: from an execution's output, a ``datum://``, a sweep's
best trial or a local path (put into the store, so it travels like a staged local input);
and the bytes a replica gets with its deployment when it cannot open the store itself."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sweeper.config.endpoint import Endpoint
from sweeper.errors import ConfigError, InputError, StoreError, SweeperError
from sweeper.execution.inputs.datum import datum_source, execution_sources
from sweeper.store import Store

from .model import FileSource, PinnedFile


def pin_files(
    endpoints: Sequence[Endpoint], sources: Sequence[FileSource], store: Store, project_dir: Path
) -> tuple[PinnedFile, ...]:
    """Every file the endpoints declare, pinned; an error for a file unknown, missing or
    given twice, or a source that names nothing."""
    by_name = {e.name: e for e in endpoints}
    given: dict[tuple[str, str], FileSource] = {}
    for source in sources:
        endpoint = by_name.get(source.endpoint)
        if endpoint is None:
            raise ConfigError(
                f"--file {source.endpoint}.{source.file}: {source.endpoint!r} is not one of "
                f"the endpoints deployed ({', '.join(by_name)})"
            )
        endpoint.file(source.file)  # unknown file: ConfigError naming the known ones
        if (source.endpoint, source.file) in given:
            raise ConfigError(f"--file {source.endpoint}.{source.file} is given twice")
        given[(source.endpoint, source.file)] = source
    pinned = []
    for endpoint in endpoints:
        for file in endpoint.files:
            chosen = given.get((endpoint.name, file.name))
            if chosen is None:
                raise ConfigError(
                    f"endpoint {endpoint.name!r} needs file {file.name!r} (placed at "
                    f"{file.path}): pass --file {endpoint.name}.{file.name}=SOURCE"
                )
            sha, producer = _resolve(chosen, store, project_dir)
            pinned.append(
                PinnedFile(sha, endpoint.name, file.name, file.path, producer, chosen.source)
            )
    return tuple(pinned)


def _resolve(source: FileSource, store: Store, project_dir: Path) -> tuple[str, str | None]:
    """(sha256, producing execution) of one source; InputError when it names nothing."""
    label = f"{source.endpoint}.{source.file}"
    text = source.source
    if text.startswith("datum://"):
        blob = datum_source(label, text, store)
        return blob.sha256, None  # type: ignore[attr-defined]
    if text.startswith("best:"):
        _, _, rest = text.partition(":")
        sweep_id, sep, output = rest.partition(":")
        if not (sep and sweep_id and output):
            raise InputError(f"--file {label}={text} must look like best:SWEEP_ID:OUTPUT")
        return _execution_output(label, _best_execution(sweep_id, store), output, store)
    path = Path(text) if Path(text).is_absolute() else project_dir / text
    if path.is_file():
        sha, _size = store.put_file(path)
        return sha, None
    ref, sep, output = text.partition(":")
    if sep and ref and output and "/" not in ref:
        return _execution_output(label, ref, output, store)
    raise InputError(
        f"--file {label}={text}: no such file, and not EXEC_ID:OUTPUT, datum://SHA256 or "
        "best:SWEEP_ID:OUTPUT"
    )


def _execution_output(label: str, ref: str, output: str, store: Store) -> tuple[str, str | None]:
    sources = execution_sources(label, f"execution://{ref}/outputs/{output}", store)
    blob = sources[0]
    return blob.sha256, blob.producer_execution_id  # type: ignore[attr-defined]


def _best_execution(sweep_id: str, store: Store) -> str:
    """The id of the best complete trial of a sweep (its first objective)."""
    from sweeper.results import open as open_results  # pandas: only for best:

    try:
        best = open_results(store).best(sweep_id, k=1)
    except StoreError as exc:
        raise InputError(f"best:{sweep_id}: {exc}") from None
    if best.empty:
        raise InputError(f"best:{sweep_id}: the sweep has no complete trial")
    return str(best["execution_id"].iloc[0])


#: The most bytes (code snapshot and files together) a version's replicas get with their
#: deployment: they travel in Serve's own records of it, which its controller keeps.
MAX_SHIPPED = 512 << 20


def shipped_blobs(store: Store, shas: Sequence[str]) -> dict[str, bytes]:
    """The blobs a replica gets in its deployment's arguments: every one for a local store.

    A local store folder is only the driver's machine's: a replica on another node would
    open an empty folder of its own there. So the code snapshot and the files travel
    through Ray with the deployment, which Serve keeps for as long as the version runs (a
    replica it restarts gets them again; the driver may be long gone). An object store
    (``s3://``, ``gs://``) is the same for every node: replicas fetch from it themselves.
    """
    if store.local_path is None:
        return {}
    found: dict[str, bytes] = {}
    for sha in dict.fromkeys(shas):
        path = store.blob_local_path(sha)
        if path is None:
            raise StoreError(f"blob {sha} is not in the store {store.location}")
        found[sha] = path.read_bytes()
        size = sum(len(data) for data in found.values())
        if size > MAX_SHIPPED:
            raise SweeperError(
                f"the version's code and files are over {MAX_SHIPPED >> 20} MB, too much to "
                "send to its replicas with the deployment: use a store every node reaches "
                "(--store s3://... or gs://...), or smaller files"
            )
    return found


__all__ = ["MAX_SHIPPED", "pin_files", "shipped_blobs"]
