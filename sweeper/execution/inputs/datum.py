"""Inputs from the store: ``datum://<sha256>`` (a blob), ``execution://<id>/outputs/<path>``
(an output of an earlier execution, recorded as its producer), and the local files the
driver staged for a node without its disk."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from sweeper.errors import InputError, StoreError
from sweeper.execution.inputs.base import BlobStore, Source, StagedFile, chunks
from sweeper.execution.inputs.cache import InputCache
from sweeper.execution.inputs.uris import split_wildcard, wildcard_regex
from sweeper.record import ExecutionRecord

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class BlobSource(Source):
    """A blob of the store, checked against its digest as it arrives."""

    def __init__(
        self,
        name: str,
        uri: str,
        full: str,
        suffix: str,
        store: BlobStore,
        sha256: str,
        producer: str | None,
    ) -> None:
        super().__init__(name, uri, full, suffix)
        self.store = store
        self.sha256 = sha256
        self.producer_execution_id = producer

    def fetch(self, cache: InputCache) -> tuple[str, int]:
        """Copy the blob into the cache unless it is there (its name is its digest)."""
        path = cache.blob_path(self.sha256)
        if path.is_file():
            return self.sha256, path.stat().st_size
        try:
            local = self.store.blob_local_path(self.sha256)
            if local is not None:
                with Path(local).open("rb") as stream:
                    sha, size = cache.ingest(chunks(stream))
            else:
                with cache.temporary() as tmp:
                    self.store.fetch_blob(self.sha256, tmp)
                    with tmp.open("rb") as stream:
                        sha, size = cache.ingest(chunks(stream))
        except (OSError, StoreError) as exc:
            raise self.error(exc) from exc
        if sha != self.sha256:
            raise self.error(f"the store's blob is corrupt (its content hashes to {sha})")
        return sha, size


def staged_sources(name: str, store: BlobStore, staged: Sequence[StagedFile]) -> list[Source]:
    """The files the driver staged for a local URI, fetched from the store."""
    return [BlobSource(name, f.uri, f.full, f.suffix, store, f.sha256, None) for f in staged]


def datum_source(name: str, uri: str, store: BlobStore) -> Source:
    """The blob a ``datum://<sha256>`` URI names."""
    sha = uri[len("datum://") :].strip("/").lower()
    if not _SHA256_RE.match(sha):
        raise InputError(f'input "{name}": {uri} is not datum://<sha256 of 64 hex digits>')
    if not store.has_blob(sha):
        raise InputError(f'input "{name}": {uri}: no such blob in the store')
    return BlobSource(name, uri, sha, sha, store, sha, None)


def execution_sources(name: str, uri: str, store: BlobStore) -> list[Source]:
    """The outputs of an earlier execution that ``execution://<ref>/outputs/<path>`` names
    (``<path>`` may hold a wildcard, whose ``*`` also matches ``/``)."""
    parts = urlsplit(uri)
    ref, path = parts.netloc, unquote(parts.path)
    if not ref or not path.startswith("/outputs/") or path == "/outputs/":
        raise InputError(f'input "{name}": {uri} is not execution://<id>/outputs/<path>')
    wanted = path[len("/outputs/") :]
    try:
        record = ExecutionRecord.from_dict(store.find_execution(ref))
    except (StoreError, ValueError) as exc:  # ValueError: a record without an id
        raise InputError(f'input "{name}": {uri}: {exc}') from exc
    producer = record.id
    outputs = {str(out["path"]).lstrip("/"): out for out in record.outputs}
    prefix, pattern = split_wildcard(wanted)
    if pattern is None:
        if wanted not in outputs:
            raise InputError(
                f'input "{name}": execution {producer} has no output "{wanted}"'
                + (f"; it has: {', '.join(sorted(outputs)[:10])}" if outputs else "")
            )
        chosen = [(wanted, PurePosixPath(wanted).name)]
    else:
        regex = wildcard_regex(pattern, star_crosses_slash=True)
        lead = prefix + "/" if prefix else ""
        chosen = [
            (out, out[len(lead) :])
            for out in sorted(outputs)
            if out.startswith(lead) and regex.match(out[len(lead) :])
        ]
        if not chosen:
            raise InputError(f'input "{name}": {uri} matched no outputs of {producer}')
    sources: list[Source] = []
    for out, suffix in chosen:
        sha = str(outputs[out]["sha256"])
        out_uri = f"execution://{producer}/outputs/{out}"
        if not store.has_blob(sha):
            raise InputError(f'input "{name}": {out_uri}: its blob {sha} is not in the store')
        sources.append(BlobSource(name, out_uri, out, suffix, store, sha, producer))
    return sources


__all__ = ["BlobSource", "datum_source", "execution_sources", "staged_sources"]
