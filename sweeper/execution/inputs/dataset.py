"""Inputs from dataset versions: ``dataset://NAME/VERSION`` delivers every file of the version.

The files come from the store's blobs (checked against their sha256 as they arrive) and
are recorded with the execution that made the version as their producer, so lineage runs
through a dataset as it runs through ``execution://``. ``dataset://NAME/latest`` is the
newest version of NAME: :func:`pin_latest` turns it into that version's own URI before the
execution is recorded, so its record names the version it read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sweeper.errors import InputError, StoreError
from sweeper.execution.inputs.base import BlobStore, Source
from sweeper.execution.inputs.datum import BlobSource
from sweeper.store import LATEST, DatasetVersion, dataset_versions, find_version, split_version_uri


def dataset_sources(name: str, uri: str, store: BlobStore) -> list[Source]:
    """The files of the version ``dataset://NAME/VERSION`` names, by their path in it."""
    version = _version(name, uri, store)
    return [
        BlobSource(name, version.uri, f.path, f.path, store, f.sha256, version.made_by)
        for f in version.files
    ]


def pin_latest(
    uris: Mapping[str, Sequence[str]], store: BlobStore
) -> dict[str, tuple[str, ...]] | None:
    """``uris`` with each ``dataset://NAME/latest`` replaced by the newest version's URI;
    None when there is none to replace (the store is not read then)."""
    if not any(_is_latest(uri) for values in uris.values() for uri in values):
        return None
    return {
        name: tuple(_version(name, uri, store).uri if _is_latest(uri) else uri for uri in values)
        for name, values in uris.items()
    }


def _is_latest(uri: str) -> bool:
    parsed = split_version_uri(uri)
    return parsed is not None and parsed[1] == LATEST


def _version(name: str, uri: str, store: BlobStore) -> DatasetVersion:
    parsed = split_version_uri(uri)
    if parsed is None:
        raise InputError(f'input "{name}": {uri} is not dataset://NAME/VERSION')
    try:
        found = find_version(store, *parsed)
        known = [] if found is not None else dataset_versions(store, parsed[0])
    except StoreError as exc:
        raise InputError(f'input "{name}": {uri}: {exc}') from exc
    if found is None:
        versions = ", ".join(v.version for v in known)
        raise InputError(
            f'input "{name}": {uri}: no such dataset version in the store'
            + (f"; {parsed[0]} has: {versions}" if versions else f"; no dataset {parsed[0]}")
        )
    return found


__all__ = ["dataset_sources", "pin_latest"]
