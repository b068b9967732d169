"""Execution inputs: resolve the URIs of a step's inputs and place their files under ``inputs/``.

Valohai's contract is that every file of input ``name`` is readable at
``/valohai/inputs/<name>/<file>`` when the command starts; locally that is
``<workdir>/inputs/<name>/<file>``. This module turns the URIs the user gave (or the step's
defaults) into those files:

- local paths, relative to the project folder, and ``file://`` URIs;
- ``http://`` and ``https://`` URLs (basic auth as ``https://user:password@host/...``);
- ``s3://``, ``gs://``, ``hdfs://``, ``abfs://`` and the other URIs ``pyarrow.fs`` opens;
  for S3 an endpoint (MinIO, a test server) comes from ``s3_endpoint_url``, or from the
  ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` environment variables;
- ``datum://<sha256>``, a blob in the store, and ``execution://<id>/outputs/<path>``, an
  output of an earlier execution; these record which execution produced the file.

On a cluster whose nodes may not see the driver's disk, the driver puts the local files of an
execution's inputs into the store first (:class:`InputStager`) and hands the node their
digests (``staged``): the node fetches them from the store, and the record keeps the same
URIs, paths and sha256 as on a laptop.

Wildcards select several files: ``data/**/*.npz`` and ``file:///data/*.csv`` follow glob rules
(``*`` stays within one folder, ``**/`` spans any number of them); object stores have no
folders, so there, as on Valohai, ``*`` also matches ``/``. An input's ``keep-directories``
decides where each match lands: ``none`` keeps only the file name, ``full`` the whole path
after the bucket (or project) root, ``suffix`` the part after the wildcard's fixed prefix.

Every file goes through a cache folder keyed by its sha256 and is hard-linked (or copied)
into place, so a sweep of a hundred trials downloads a data set once. A remote file is not
downloaded again while its size and modification time (HTTP: ETag / Last-Modified, asked
with a conditional GET) are unchanged. Cached blobs are made read-only because the inputs
folders share their inode.

Example::

    uris = resolve_inputs(step.inputs, {"dataset": ["s3://bucket/mnist.npz"]}, project_dir=p)
    files = fetch_inputs(uris, step.inputs, inputs_dir=workdir / "inputs",
                         project_dir=p, cache_dir=cache)
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

from sweeper.errors import InputError, StoreError

__all__ = [
    "SUPPORTED_SCHEMES",
    "BlobStore",
    "InputFile",
    "InputLike",
    "InputStager",
    "StagedFile",
    "fetch_inputs",
    "resolve_inputs",
]

#: Schemes pyarrow.fs opens; anything else (besides local paths, http, datum, execution) is refused.
ARROW_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")
SUPPORTED_SCHEMES = ("file", "http", "https", *ARROW_SCHEMES, "datum", "execution")

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20
_HTTP_TIMEOUT_S = 60
_KEEP_DIRECTORIES = ("none", "full", "suffix")


class InputLike(Protocol):
    """What this module reads from a step input (``sweeper.config.Input`` fits)."""

    @property
    def name(self) -> str: ...
    @property
    def default(self) -> tuple[str, ...]: ...
    @property
    def optional(self) -> bool: ...
    @property
    def filename(self) -> str | None: ...
    @property
    def keep_directories(self) -> str: ...


class BlobStore(Protocol):
    """The part of ``sweeper.store.Store`` that lineage URIs need."""

    def has_blob(self, sha256: str) -> bool: ...
    def fetch_blob(self, sha256: str, dest: Path) -> Any: ...
    def blob_local_path(self, sha256: str) -> Path | None: ...
    def find_execution(self, ref: str) -> Mapping[str, Any]: ...


class StagingStore(Protocol):
    """The part of ``sweeper.store.Store`` that staging local inputs needs."""

    def put_file(self, path: str | os.PathLike[str]) -> tuple[str, int]: ...


@dataclass(frozen=True)
class StagedFile:
    """A local input file the driver put into the store, for a node without the driver's disk.

    ``uri``, ``full`` and ``suffix`` are what the file's local source would have given
    (the match of a wildcard, its whole path, its path after the wildcard's fixed prefix),
    so the file lands where it would on the driver and the record names it the same way.
    """

    uri: str
    full: str
    suffix: str
    sha256: str
    size: int


@dataclass(frozen=True)
class InputFile:
    """One file placed under ``inputs/``.

    ``path`` is relative to the inputs folder and starts with the input's name
    (``"dataset/mnist.npz"``); ``uri`` is where this very file came from (for a wildcard,
    the match, not the pattern), with any password in it masked.
    """

    name: str
    uri: str
    path: str
    sha256: str
    size: int
    producer_execution_id: str | None = None


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
        raw = [_given_uri(u) for u in given[inp.name]] if inp.name in given else inp.default
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
    scheme = _scheme(name, uri)
    if scheme is None:
        path = _plain_path(name, uri)
        prefix, pattern = _split_wildcard(path)
        target = project_dir / (prefix if pattern is not None else path)
        _confine(name, uri, target, project_dir)


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
    without its step, is fetched as a plain input: no filename, keep-directories none). Files come back in step-input order, then URI order, then sorted
    matches of each wildcard. Raises :class:`InputError` for unreadable or missing files,
    unsupported schemes, wildcards that match nothing, and any file name or path that would
    land outside ``inputs_dir/<name>/``.

    ``staged`` maps a local URI to the files :class:`InputStager` put into ``store`` for it;
    those are fetched from the store instead of the (driver's) project folder.
    """
    inputs: list[InputLike] = list(step_inputs)
    known = {inp.name for inp in inputs}
    inputs += [_PlainInput(name) for name in uris if name not in known]
    merged = resolve_inputs(inputs, uris, project_dir=project_dir)
    endpoint = (
        s3_endpoint_url
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
        or None
    )
    lister = _Lister(
        project_dir=project_dir, store=store, s3_endpoint_url=endpoint, staged=staged or {}
    )

    planned: list[tuple[_Source, str]] = []
    for inp in inputs:
        _check_input_name(inp.name)
        if inp.keep_directories not in _KEEP_DIRECTORIES:
            raise InputError(
                f'input "{inp.name}": keep-directories must be one of '
                f'{", ".join(_KEEP_DIRECTORIES)}, not "{inp.keep_directories}"'
            )
        sources = [src for uri in merged[inp.name] for src in lister.expand(inp.name, uri)]
        if inp.filename and len(sources) > 1:
            raise InputError(
                f'input "{inp.name}": filename "{inp.filename}" renames one file, '
                f"but the input has {len(sources)}; drop filename or select one file"
            )
        taken: dict[str, str] = {}
        for src in sources:
            rel = inp.filename if inp.filename else src.relative(inp.keep_directories)
            rel = _safe_relative(inp.name, src.uri, rel)
            if rel in taken:
                raise InputError(
                    f'input "{inp.name}": {taken[rel]} and {src.uri} would both be saved as '
                    f'"{rel}"; set keep-directories: suffix or full to keep their folders'
                )
            taken[rel] = src.uri
            planned.append((src, f"{inp.name}/{rel}"))

    if not planned:
        return []  # most executions of a sweep: no cache folders to make, no pool to start
    cache = _Cache(cache_dir)
    with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
        blobs = list(pool.map(lambda item: item[0].fetch(cache), planned))

    files = []
    for (src, rel), (sha, size) in zip(planned, blobs, strict=True):
        _materialize(cache.blob_path(sha), inputs_dir, rel, src)
        files.append(InputFile(src.name, src.uri, rel, sha, size, src.producer_execution_id))
    return files


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
        inputs: list[InputLike] = list(step_inputs)
        known = {inp.name for inp in inputs}
        inputs += [_PlainInput(name) for name in uris if name not in known]
        try:
            merged = resolve_inputs(inputs, uris, project_dir=project_dir)
        except InputError:  # the node says what is wrong, as it would on a laptop
            return {}
        lister = _Lister(project_dir=project_dir, store=None, s3_endpoint_url=None)
        staged: dict[str, tuple[StagedFile, ...]] = {}
        for name, name_uris in merged.items():
            for uri in name_uris:
                try:
                    if uri in staged or _scheme(name, uri) not in (None, "file"):
                        continue
                    sources = lister.expand(name, uri)
                    staged[uri] = tuple(
                        self._put(src) for src in sources if isinstance(src, _LocalSource)
                    )
                except (InputError, OSError):
                    continue
        return staged

    def _put(self, src: _LocalSource) -> StagedFile:
        st = src.path.stat()
        key = (str(src.path.resolve()), st.st_size, st.st_mtime_ns)
        if key not in self._known:
            self._known[key] = self.store.put_file(src.path)
        sha256, size = self._known[key]
        return StagedFile(src.uri, src.relative("full"), src.relative("suffix"), sha256, size)


@dataclass(frozen=True)
class _PlainInput:
    """An input the step does not declare: optional, no rename, flat layout."""

    name: str
    default: tuple[str, ...] = ()
    optional: bool = True
    filename: str | None = None
    keep_directories: str = "none"


def _check_input_name(name: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise InputError(f'input name "{name}" cannot be used as a folder name under inputs/')


def _safe_relative(name: str, uri: str, rel: str) -> str:
    """Refuse a destination path that is absolute, empty or climbs out with ``..``."""
    if not rel or rel.startswith(("/", "\\")) or "\0" in rel or re.match(r"^[A-Za-z]:", rel):
        raise InputError(
            f'input "{name}": file path "{rel}" from {uri} would escape inputs/{name}/'
            if rel
            else f'input "{name}": cannot name the file from {uri}; set the input\'s filename'
        )
    parts = [part for part in rel.replace("\\", "/").split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        raise InputError(
            f'input "{name}": file path "{rel}" from {uri} would escape inputs/{name}/'
        )
    return "/".join(parts)


def _materialize(blob: Path, inputs_dir: Path, rel: str, src: _Source) -> None:
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


# --------------------------------------------------------------------------- sources


class _Source:
    """One concrete file an input URI resolved to."""

    def __init__(self, name: str, uri: str, full: str, suffix: str) -> None:
        self.name = name
        self.uri = uri
        self._full = full
        self._suffix = suffix
        self.producer_execution_id: str | None = None

    def relative(self, keep_directories: str) -> str:
        """The destination under ``inputs/<name>/`` for a ``keep-directories`` mode."""
        if keep_directories == "full":
            return self._full
        if keep_directories == "suffix":
            return self._suffix
        return PurePosixPath(self._full).name if self._full else ""

    def fetch(self, cache: _Cache) -> tuple[str, int]:
        """Bring the file into the cache; return its sha256 and size."""
        raise NotImplementedError

    def _error(self, exc: BaseException | str) -> InputError:
        return InputError(f'input "{self.name}": cannot read {self.uri}: {exc}')


class _LocalSource(_Source):
    def __init__(self, name: str, uri: str, full: str, suffix: str, path: Path) -> None:
        super().__init__(name, uri, full, suffix)
        self.path = path

    def fetch(self, cache: _Cache) -> tuple[str, int]:
        try:
            st = self.path.stat()
            key = "file://" + str(self.path.resolve())
            validator = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
            hit = cache.lookup(key, validator)
            if hit:
                return hit
            with self.path.open("rb") as stream:
                sha, size = cache.ingest(_chunks(stream))
        except OSError as exc:
            raise self._error(exc.strerror or exc) from exc
        cache.remember(key, self.uri, validator, sha, size)
        return sha, size


class _ArrowSource(_Source):
    def __init__(
        self, name: str, uri: str, full: str, suffix: str, fs: Any, path: str, info: Any
    ) -> None:
        super().__init__(name, uri, full, suffix)
        self.fs = fs
        self.path = path
        self.info = info

    def fetch(self, cache: _Cache) -> tuple[str, int]:
        validator = {"size": self.info.size, "mtime_ns": self.info.mtime_ns}
        hit = cache.lookup(self.uri, validator)
        if hit:
            return hit
        try:
            with self.fs.open_input_stream(self.path) as stream:
                sha, size = cache.ingest(_chunks(stream))
        except (OSError, ValueError) as exc:
            raise self._error(exc) from exc
        cache.remember(self.uri, self.uri, validator, sha, size)
        return sha, size


class _HttpSource(_Source):
    def __init__(self, name: str, uri: str, full: str, url: str, headers: dict[str, str]) -> None:
        super().__init__(name, uri, full, PurePosixPath(full).name)
        self.url = url
        self.headers = headers

    def fetch(self, cache: _Cache) -> tuple[str, int]:
        headers = dict(self.headers)
        entry = cache.entry(self.url)
        if entry is not None and cache.has(entry["sha256"], entry["size"]):
            validator = entry.get("validator", {})
            if validator.get("etag"):
                headers["If-None-Match"] = validator["etag"]
            if validator.get("last_modified"):
                headers["If-Modified-Since"] = validator["last_modified"]
        request = urllib.request.Request(self.url, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=_HTTP_TIMEOUT_S) as response:
                validator = {
                    "etag": response.headers.get("ETag"),
                    "last_modified": response.headers.get("Last-Modified"),
                }
                sha, size = cache.ingest(_chunks(response))
        except urllib.error.HTTPError as exc:
            if exc.code == 304 and entry is not None:
                return entry["sha256"], entry["size"]
            raise self._error(f"HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise self._error(reason) from exc
        if validator["etag"] or validator["last_modified"]:
            cache.remember(self.url, self.uri, validator, sha, size)
        return sha, size


class _BlobSource(_Source):
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

    def fetch(self, cache: _Cache) -> tuple[str, int]:
        path = cache.blob_path(self.sha256)
        if path.is_file():
            return self.sha256, path.stat().st_size
        try:
            local = self.store.blob_local_path(self.sha256)
            if local is not None:
                with Path(local).open("rb") as stream:
                    sha, size = cache.ingest(_chunks(stream))
            else:
                with cache.temporary() as tmp:
                    self.store.fetch_blob(self.sha256, tmp)
                    with tmp.open("rb") as stream:
                        sha, size = cache.ingest(_chunks(stream))
        except (OSError, StoreError) as exc:
            raise self._error(exc) from exc
        if sha != self.sha256:
            raise self._error(f"the store's blob is corrupt (its content hashes to {sha})")
        return sha, size


def _chunks(stream: BinaryIO | Any) -> Iterator[bytes]:
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            return
        yield chunk


# --------------------------------------------------------------------------- listing


class _Lister:
    """Expands one input URI into the concrete files it names."""

    def __init__(
        self,
        *,
        project_dir: Path,
        store: BlobStore | None,
        s3_endpoint_url: str | None,
        staged: Mapping[str, Sequence[StagedFile]] | None = None,
    ) -> None:
        self.project_dir = project_dir
        self.store = store
        self.s3_endpoint_url = s3_endpoint_url
        self.staged = staged or {}
        self._filesystems: dict[tuple[str, str, str], Any] = {}

    def expand(self, name: str, uri: str) -> list[_Source]:
        scheme = _scheme(name, uri)
        if uri in self.staged and scheme in (None, "file"):
            store = self._need_store(name, uri)
            return [
                _BlobSource(name, f.uri, f.full, f.suffix, store, f.sha256, None)
                for f in self.staged[uri]
            ]
        if scheme is None:
            path = _plain_path(name, uri)
            return self._local(name, uri, path, self.project_dir, lambda rel: rel, confine=True)
        if scheme == "file":
            parts = urlsplit(uri)
            if parts.netloc not in ("", "localhost"):
                raise InputError(f'input "{name}": {uri} names another host; use file:///path')
            path = unquote(parts.path)
            return self._local(
                name, uri, path.lstrip("/"), Path("/"), lambda rel: "file:///" + rel, confine=False
            )
        if scheme in ("http", "https"):
            return [self._http(name, uri)]
        if scheme == "datum":
            return [self._datum(name, uri)]
        if scheme == "execution":
            return self._execution(name, uri)
        return self._arrow(name, uri, scheme)

    # local paths and file://

    def _local(
        self,
        name: str,
        uri: str,
        rel: str,
        root: Path,
        uri_of: Callable[[str], str],
        *,
        confine: bool,
    ) -> list[_Source]:
        prefix, pattern = _split_wildcard(rel)
        if pattern is None:
            path = root / rel
            real = _confine(name, uri, path, root) if confine else path
            if not real.exists():
                raise InputError(f'input "{name}": no such file {uri}')
            if real.is_dir():
                raise InputError(
                    f'input "{name}": {uri} is a folder; select its files with a wildcard, '
                    f"e.g. {uri.rstrip('/')}/**"
                )
            full = PurePosixPath(rel).as_posix()
            return [_LocalSource(name, uri, full, PurePosixPath(full).name, path)]

        top = root / prefix
        if confine:
            _confine(name, uri, top, root)
        if not top.is_dir():
            raise InputError(f'input "{name}": no such folder {top} for {uri}')
        regex = _wildcard_regex(pattern, star_crosses_slash=False)
        depth = None if "**" in pattern else pattern.count("/") + 1
        sources: list[_Source] = []
        for sub in _walk(top, depth):
            if not regex.match(sub):
                continue
            path = top / sub
            if confine:
                _confine(name, uri_of(_join(prefix, sub)), path, root)
            if not path.is_file():
                raise InputError(f'input "{name}": {path} matched {uri} but cannot be read')
            full = _join(prefix, sub)
            sources.append(_LocalSource(name, uri_of(full), full, sub, path))
        if not sources:
            raise InputError(f'input "{name}": {uri} matched no files')
        return sources

    # http(s)

    def _http(self, name: str, uri: str) -> _Source:
        parts = urlsplit(uri)
        headers = {"User-Agent": "sweeper"}
        display = uri
        if parts.username is not None:
            token = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(token).decode()
            host = parts.hostname or ""
            if parts.port:
                host += f":{parts.port}"
            url = urlunsplit((parts.scheme, host, parts.path, parts.query, ""))
            display = urlunsplit(
                (parts.scheme, f"{parts.username}:***@{host}", parts.path, parts.query, "")
            )
        else:
            url = urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, ""))
        full = unquote(parts.path).lstrip("/")
        return _HttpSource(name, display, full, url, headers)

    # datum:// and execution://

    def _need_store(self, name: str, uri: str) -> BlobStore:
        if self.store is None:
            raise InputError(f'input "{name}": {uri} needs a store, and none is open')
        return self.store

    def _datum(self, name: str, uri: str) -> _Source:
        store = self._need_store(name, uri)
        sha = uri[len("datum://") :].strip("/").lower()
        if not _SHA256_RE.match(sha):
            raise InputError(f'input "{name}": {uri} is not datum://<sha256 of 64 hex digits>')
        if not store.has_blob(sha):
            raise InputError(f'input "{name}": {uri}: no such blob in the store')
        return _BlobSource(name, uri, sha, sha, store, sha, None)

    def _execution(self, name: str, uri: str) -> list[_Source]:
        store = self._need_store(name, uri)
        parts = urlsplit(uri)
        ref, path = parts.netloc, unquote(parts.path)
        if not ref or not path.startswith("/outputs/") or path == "/outputs/":
            raise InputError(f'input "{name}": {uri} is not execution://<id>/outputs/<path>')
        wanted = path[len("/outputs/") :]
        try:
            record = store.find_execution(ref)
        except StoreError as exc:
            raise InputError(f'input "{name}": {uri}: {exc}') from exc
        producer = str(record.get("id") or record.get("execution_id") or ref)
        outputs = {str(out["path"]).lstrip("/"): out for out in record.get("outputs") or ()}
        prefix, pattern = _split_wildcard(wanted)
        if pattern is None:
            if wanted not in outputs:
                raise InputError(
                    f'input "{name}": execution {producer} has no output "{wanted}"'
                    + (f"; it has: {', '.join(sorted(outputs)[:10])}" if outputs else "")
                )
            chosen = [(wanted, PurePosixPath(wanted).name)]
        else:
            regex = _wildcard_regex(pattern, star_crosses_slash=True)
            lead = prefix + "/" if prefix else ""
            chosen = [
                (out, out[len(lead) :])
                for out in sorted(outputs)
                if out.startswith(lead) and regex.match(out[len(lead) :])
            ]
            if not chosen:
                raise InputError(f'input "{name}": {uri} matched no outputs of {producer}')
        sources: list[_Source] = []
        for out, suffix in chosen:
            sha = str(outputs[out]["sha256"])
            out_uri = f"execution://{producer}/outputs/{out}"
            if not store.has_blob(sha):
                raise InputError(f'input "{name}": {out_uri}: its blob {sha} is not in the store')
            sources.append(_BlobSource(name, out_uri, out, suffix, store, sha, producer))
        return sources

    # pyarrow.fs

    def _arrow(self, name: str, uri: str, scheme: str) -> list[_Source]:
        parts = urlsplit(uri)
        prefix, pattern = _split_wildcard(parts.path)
        fs, base = self._filesystem(name, uri, parts.scheme, parts.netloc, prefix, parts.query)
        try:
            from pyarrow import fs as pafs

            if pattern is None:
                info = fs.get_file_info(base)
                if info.type == pafs.FileType.NotFound:
                    raise InputError(f'input "{name}": no such file {uri}')
                if info.type != pafs.FileType.File:
                    raise InputError(
                        f'input "{name}": {uri} is a folder; select its files with a wildcard, '
                        f"e.g. {uri.rstrip('/')}/*"
                    )
                infos = [(info, PurePosixPath(base).name)]
            else:
                regex = _wildcard_regex(pattern, star_crosses_slash=True)
                selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
                infos = []
                for info in fs.get_file_info(selector):
                    sub = info.path[len(base) :].lstrip("/")
                    if info.type == pafs.FileType.File and regex.match(sub):
                        infos.append((info, sub))
                infos.sort(key=lambda item: item[0].path)
        except (OSError, ValueError) as exc:
            raise InputError(f'input "{name}": cannot read {uri}: {exc}') from exc
        if not infos:
            raise InputError(f'input "{name}": {uri} matched no files')
        query = f"?{parts.query}" if parts.query else ""
        sources: list[_Source] = []
        for info, suffix in infos:
            if info.path.startswith("/"):
                file_uri = f"{scheme}://{parts.netloc}{info.path}{query}"
                full = info.path.lstrip("/")
            else:
                file_uri = f"{scheme}://{info.path}{query}"
                full = info.path.split("/", 1)[1] if "/" in info.path else info.path
            sources.append(_ArrowSource(name, file_uri, full, suffix, fs, info.path, info))
        return sources

    def _filesystem(
        self, name: str, uri: str, scheme: str, netloc: str, path: str, query: str
    ) -> tuple[Any, str]:
        from pyarrow import fs as pafs

        base_uri = urlunsplit((scheme, netloc, path, query, ""))
        try:
            if scheme == "s3" and self.s3_endpoint_url and "endpoint_override" not in query:
                key = (scheme, "", self.s3_endpoint_url)
                if key not in self._filesystems:
                    endpoint = urlsplit(self.s3_endpoint_url)
                    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
                    self._filesystems[key] = pafs.S3FileSystem(
                        endpoint_override=endpoint.netloc or endpoint.path,
                        scheme=endpoint.scheme or "https",
                        region=region or "us-east-1",
                    )
                return self._filesystems[key], f"{netloc}{path}".rstrip("/")
            fs, base = pafs.FileSystem.from_uri(base_uri)
        except (OSError, ValueError) as exc:
            raise InputError(f'input "{name}": cannot open {uri}: {exc}') from exc
        return fs, base.rstrip("/") or base


# --------------------------------------------------------------------------- cache


class _Cache:
    """Content-addressed blobs plus a URI -> sha256 index, shared by concurrent fetches.

    Layout: ``blobs/<sha256>`` (read-only), ``uris/<sha256 of the URI>.json`` and ``tmp/``.
    Every write is a temporary file renamed into place, so readers never see half a file.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("blobs", "uris", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    def blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256

    def has(self, sha256: str, size: int) -> bool:
        try:
            return self.blob_path(sha256).stat().st_size == size
        except OSError:
            return False

    def _index_path(self, key: str) -> Path:
        return self.root / "uris" / (hashlib.sha256(key.encode()).hexdigest() + ".json")

    def entry(self, key: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self._index_path(key).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and "sha256" in data and "size" in data else None

    def lookup(self, key: str, validator: Mapping[str, Any]) -> tuple[str, int] | None:
        """The cached (sha256, size) when ``key`` was fetched with the same validator."""
        entry = self.entry(key)
        if entry is None or entry.get("validator") != dict(validator):
            return None
        if not self.has(entry["sha256"], entry["size"]):
            return None
        return entry["sha256"], entry["size"]

    def remember(
        self, key: str, uri: str, validator: Mapping[str, Any], sha256: str, size: int
    ) -> None:
        record = {"uri": uri, "validator": dict(validator), "sha256": sha256, "size": size}
        with self.temporary() as tmp:
            tmp.write_text(json.dumps(record))
            os.replace(tmp, self._index_path(key))

    @contextlib.contextmanager
    def temporary(self) -> Iterator[Path]:
        """A fresh temporary file path in the cache, removed afterwards unless renamed."""
        fd, name = tempfile.mkstemp(dir=self.root / "tmp", prefix=".part-")
        os.close(fd)
        path = Path(name)
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    def ingest(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        """Write a stream into the cache while hashing it; return (sha256, size)."""
        digest = hashlib.sha256()
        size = 0
        with self.temporary() as tmp:
            with tmp.open("wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            sha = digest.hexdigest()
            if not self.has(sha, size):
                tmp.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
                os.replace(tmp, self.blob_path(sha))
        return sha, size


# --------------------------------------------------------------------------- helpers


def _scheme(name: str, uri: str) -> str | None:
    """The URI's scheme (lower case), ``None`` for a plain path; refuses unsupported ones."""
    match = _SCHEME_RE.match(uri)
    if match is None:
        return None
    scheme = match.group(1).lower()
    if scheme not in SUPPORTED_SCHEMES:
        raise InputError(
            f'input "{name}": unsupported URI scheme "{scheme}" in {uri}; '
            f"supported: local paths, {', '.join(s + '://' for s in SUPPORTED_SCHEMES)}"
        )
    return scheme


def _given_uri(uri: str) -> str:
    """A URI given for one execution: an absolute local path becomes ``file://PATH``."""
    text = uri.strip()
    if text.startswith("/") and _SCHEME_RE.match(text) is None:
        return PurePosixPath(text).as_uri()
    return uri


def _plain_path(name: str, uri: str) -> str:
    if uri.startswith("/"):
        raise InputError(
            f'input "{name}": absolute path {uri}; local inputs are relative to the project '
            f"folder, use file://{uri} for a file elsewhere"
        )
    return uri


def _confine(name: str, uri: str, path: Path, root: Path) -> Path:
    """Resolve ``path`` (following symlinks) and refuse it if it lies outside ``root``."""
    real = path.resolve()
    if not real.is_relative_to(root.resolve()):
        raise InputError(
            f'input "{name}": {uri} resolves to {real}, outside the project folder {root}; '
            f"use a file:// URI for files elsewhere"
        )
    return real


def _split_wildcard(path: str) -> tuple[str, str | None]:
    """``"data/**/*.npz"`` -> ``("data", "**/*.npz")``; without a wildcard, ``(path, None)``."""
    positions = [pos for pos in (path.find("*"), path.find("?")) if pos >= 0]
    if not positions:
        return path, None
    cut = path.rfind("/", 0, min(positions))
    if cut < 0:
        return "", path
    return (path[:cut] or "/"), path[cut + 1 :]


def _wildcard_regex(pattern: str, *, star_crosses_slash: bool) -> re.Pattern[str]:
    """Translate a wildcard to a regex: ``**/`` any folders, ``**`` anything, ``?`` one char."""
    star = ".*" if star_crosses_slash else "[^/]*"
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append(star)
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def _walk(top: Path, depth: int | None) -> Iterator[str]:
    """Relative POSIX paths of the files under ``top``, at most ``depth`` levels deep.

    Symlinked folders are not entered; symlinked files are listed (and checked by the caller).
    """
    for dirpath, dirnames, filenames in os.walk(top):
        rel_dir = Path(dirpath).relative_to(top).as_posix()
        level = 0 if rel_dir == "." else rel_dir.count("/") + 1
        if depth is not None and level + 1 >= depth:
            dirnames[:] = []
        dirnames.sort()
        if depth is not None and level + 1 > depth:
            continue
        for filename in sorted(filenames):
            yield filename if rel_dir == "." else f"{rel_dir}/{filename}"


def _join(prefix: str, sub: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/{sub}" if prefix else sub
