"""Resolving a step's input URIs, and placing their files under ``inputs/``.

:func:`resolve_inputs` checks what can be checked without reading a file; :func:`fetch_inputs`
lists the files each URI names (through its scheme's module), brings them into the cache in
parallel and links them into place; :class:`InputStager` puts local files into the store for
nodes that do not see the driver's disk.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sweeper.errors import InputError
from sweeper.execution.inputs.base import (
    BlobStore,
    InputFile,
    InputLike,
    PlainInput,
    Source,
    StagedFile,
    StagingStore,
)
from sweeper.execution.inputs.cache import InputCache
from sweeper.execution.inputs.dataset import dataset_sources
from sweeper.execution.inputs.datum import datum_source, execution_sources, staged_sources
from sweeper.execution.inputs.http import http_source
from sweeper.execution.inputs.local import LocalSource, local_sources
from sweeper.execution.inputs.objects import ObjectLister
from sweeper.execution.inputs.uris import (
    check_input_name,
    confine,
    given_uri,
    plain_path,
    safe_relative,
    scheme,
    split_wildcard,
)

_KEEP_DIRECTORIES = ("none", "full", "suffix")


# --------------------------------------------------------------------------- resolve


def resolve_inputs(
    step_inputs: Iterable[InputLike],
    given: Mapping[str, Sequence[str]],
    *,
    project_dir: Path,
) -> dict[str, list[str]]:
    """Merge the step's input defaults with the URIs given for this execution.

    A name in ``given`` replaces that input's default (an empty list clears it). Returns
    every step input in step order, an optional input without URIs as ``[]``. Checks what
    can be checked without downloading: known input names, required inputs present,
    supported schemes, and that plain local paths stay inside ``project_dir``.

    A plain absolute path given here (``--input data=/home/me/data.csv``) is the user's
    own file and becomes a ``file://`` URI; in a valohai.yaml default it is still refused
    (a project's defaults stay inside the project).

    Raises :class:`InputError` for an unknown input name, a required input without a
    value, or an unusable URI.
    """
    inputs = list(step_inputs)
    known = {inp.name for inp in inputs}
    unknown = [name for name in given if name not in known]
    if unknown:
        raise InputError(
            f'unknown input "{unknown[0]}"; the step has inputs: {_names(inputs)}'
            if len(unknown) == 1
            else f"unknown inputs {', '.join(unknown)}; the step has inputs: {_names(inputs)}"
        )
    resolved: dict[str, list[str]] = {}
    for inp in inputs:
        raw = [given_uri(u) for u in given[inp.name]] if inp.name in given else inp.default
        uris = [uri.strip() for uri in raw if uri and uri.strip()]
        if not uris and not inp.optional:
            raise InputError(
                f'input "{inp.name}" is required but has no value; '
                f"give one with --{inp.name}=URI or a default in valohai.yaml"
            )
        for uri in uris:
            _check_uri(inp.name, uri, project_dir)
        resolved[inp.name] = uris
    return resolved


def _names(inputs: Sequence[InputLike]) -> str:
    return ", ".join(inp.name for inp in inputs) or "(none)"


def _check_uri(name: str, uri: str, project_dir: Path) -> None:
    if scheme(name, uri) is None:
        path = plain_path(name, uri)
        prefix, pattern = split_wildcard(path)
        target = project_dir / (prefix if pattern is not None else path)
        confine(name, uri, target, project_dir)


def _with_undeclared(
    step_inputs: Iterable[InputLike], uris: Mapping[str, Sequence[str]]
) -> list[InputLike]:
    """The step's inputs, then a plain input for each name of ``uris`` the step lacks (as in
    a spec rebuilt from a record without its step)."""
    inputs: list[InputLike] = list(step_inputs)
    known = {inp.name for inp in inputs}
    return inputs + [PlainInput(name) for name in uris if name not in known]


# --------------------------------------------------------------------------- fetch


def fetch_inputs(
    uris: Mapping[str, Sequence[str]],
    step_inputs: Iterable[InputLike],
    *,
    inputs_dir: Path,
    project_dir: Path,
    cache_dir: Path,
    store: BlobStore | None = None,
    s3_endpoint_url: str | None = None,
    max_workers: int = 8,
    staged: Mapping[str, Sequence[StagedFile]] | None = None,
) -> list[InputFile]:
    """Download or copy every input file to ``inputs_dir/<name>/...``.

    ``uris`` is what :func:`resolve_inputs` returned (inputs missing from it fall back to
    their defaults; a name the step does not declare, as in a spec rebuilt from a record
    without its step, is fetched as a plain input: no filename, keep-directories none).
    Files come back in step-input order, then URI order, then sorted matches of each
    wildcard. Raises :class:`InputError` for unreadable or missing files, unsupported
    schemes, wildcards that match nothing, and any file name or path that would land
    outside ``inputs_dir/<name>/``.

    ``s3_endpoint_url`` defaults to the ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``
    environment variables. ``staged`` maps a local URI to the files :class:`InputStager`
    put into ``store`` for it; those are fetched from the store instead of the (driver's)
    project folder.
    """
    inputs = _with_undeclared(step_inputs, uris)
    merged = resolve_inputs(inputs, uris, project_dir=project_dir)
    endpoint = (
        s3_endpoint_url
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
        or None
    )
    lister = _Lister(project_dir, store, endpoint, staged or {})
    planned = [item for inp in inputs for item in _plan(inp, merged[inp.name], lister)]
    if not planned:
        return []  # most executions of a sweep: no cache folders to make, no pool to start
    cache = InputCache(cache_dir)
    with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
        blobs = list(pool.map(lambda item: item[0].fetch(cache), planned))
    files = []
    for (src, rel), (sha, size) in zip(planned, blobs, strict=True):
        _materialize(cache.blob_path(sha), inputs_dir, rel, src)
        files.append(InputFile(src.name, src.uri, rel, sha, size, src.producer_execution_id))
    return files


def _plan(inp: InputLike, uris: Sequence[str], lister: _Lister) -> list[tuple[Source, str]]:
    """Each file of one input with its destination ``<name>/<path>`` under ``inputs/``."""
    check_input_name(inp.name)
    if inp.keep_directories not in _KEEP_DIRECTORIES:
        raise InputError(
            f'input "{inp.name}": keep-directories must be one of '
            f'{", ".join(_KEEP_DIRECTORIES)}, not "{inp.keep_directories}"'
        )
    sources = [src for uri in uris for src in lister.expand(inp.name, uri)]
    if inp.filename and len(sources) > 1:
        raise InputError(
            f'input "{inp.name}": filename "{inp.filename}" renames one file, '
            f"but the input has {len(sources)}; drop filename or select one file"
        )
    planned: list[tuple[Source, str]] = []
    taken: dict[str, str] = {}
    for src in sources:
        rel = inp.filename if inp.filename else src.relative(inp.keep_directories)
        rel = safe_relative(inp.name, src.uri, rel)
        if rel in taken:
            raise InputError(
                f'input "{inp.name}": {taken[rel]} and {src.uri} would both be saved as '
                f'"{rel}"; set keep-directories: suffix or full to keep their folders'
            )
        taken[rel] = src.uri
        planned.append((src, f"{inp.name}/{rel}"))
    return planned


def _materialize(blob: Path, inputs_dir: Path, rel: str, src: Source) -> None:
    """Hard-link (or copy) a cached blob to ``inputs_dir/rel`` without following symlinks out."""
    base = (inputs_dir / src.name).resolve()
    dest = inputs_dir / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    real_parent = dest.parent.resolve()
    if not real_parent.is_relative_to(base) or not base.is_relative_to(inputs_dir.resolve()):
        raise InputError(
            f'input "{src.name}": {rel} would be written through a symlink outside '
            f"inputs/{src.name}/"
        )
    if dest.is_symlink() or dest.exists():
        if dest.is_dir() and not dest.is_symlink():
            raise InputError(f'input "{src.name}": {rel} is already a folder')
        dest.unlink()
    try:
        os.link(blob, dest)
    except OSError:
        shutil.copyfile(blob, dest)


class _Lister:
    """Expands one input URI into the concrete files it names, by its scheme's module."""

    def __init__(
        self,
        project_dir: Path,
        store: BlobStore | None,
        s3_endpoint_url: str | None,
        staged: Mapping[str, Sequence[StagedFile]],
    ) -> None:
        self.project_dir = project_dir
        self.store = store
        self.staged = staged
        self.objects = ObjectLister(s3_endpoint_url)

    def expand(self, name: str, uri: str) -> list[Source]:
        """The files ``uri`` names (a wildcard's matches sorted)."""
        found = scheme(name, uri)
        if uri in self.staged and found in (None, "file"):
            return staged_sources(name, self._need_store(name, uri), self.staged[uri])
        if found in (None, "file"):
            return local_sources(name, uri, found, self.project_dir)
        if found in ("http", "https"):
            return [http_source(name, uri)]
        if found == "datum":
            return [datum_source(name, uri, self._need_store(name, uri))]
        if found == "execution":
            return execution_sources(name, uri, self._need_store(name, uri))
        if found == "dataset":
            return dataset_sources(name, uri, self._need_store(name, uri))
        assert found is not None
        return self.objects.sources(name, uri, found)

    def _need_store(self, name: str, uri: str) -> BlobStore:
        if self.store is None:
            raise InputError(f'input "{name}": {uri} needs a store, and none is open')
        return self.store


# --------------------------------------------------------------------------- staging


class InputStager:
    """Puts the local files of execution inputs into a store, each file once (the driver's side).

    A node of a cluster may not see the driver's disk, where local inputs (a path in the
    project, ``file://``, a default in valohai.yaml) live. :meth:`stage` puts their files
    into the store and answers what :func:`fetch_inputs` takes as ``staged``. A file whose
    size and modification time are unchanged is not read again. A URI that cannot be read
    here is left as it is: the node then reports it as it would on a laptop.
    """

    def __init__(self, store: StagingStore) -> None:
        self.store = store
        self._known: dict[tuple[str, int, int], tuple[str, int]] = {}

    def stage(
        self,
        uris: Mapping[str, Sequence[str]],
        step_inputs: Iterable[InputLike],
        project_dir: Path,
    ) -> dict[str, tuple[StagedFile, ...]]:
        """The staged files of every local URI among ``uris`` (defaults included), by URI."""
        inputs = _with_undeclared(step_inputs, uris)
        try:
            merged = resolve_inputs(inputs, uris, project_dir=project_dir)
        except InputError:  # the node says what is wrong, as it would on a laptop
            return {}
        staged: dict[str, tuple[StagedFile, ...]] = {}
        for name, name_uris in merged.items():
            for uri in name_uris:
                try:
                    found = scheme(name, uri)
                    if uri in staged or found not in (None, "file"):
                        continue
                    sources = local_sources(name, uri, found, project_dir)
                    staged[uri] = tuple(
                        self._put(src) for src in sources if isinstance(src, LocalSource)
                    )
                except (InputError, OSError):
                    continue
        return staged

    def _put(self, src: LocalSource) -> StagedFile:
        st = src.path.stat()
        key = (str(src.path.resolve()), st.st_size, st.st_mtime_ns)
        if key not in self._known:
            self._known[key] = self.store.put_file(src.path)
        sha256, size = self._known[key]
        return StagedFile(src.uri, src.relative("full"), src.relative("suffix"), sha256, size)


__all__ = ["InputStager", "fetch_inputs", "resolve_inputs"]
