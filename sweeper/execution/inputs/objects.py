"""Object-store inputs: ``s3://``, ``gs://``, ``hdfs://``, ``abfs://`` and the other URIs
``pyarrow.fs`` opens.

For S3 an endpoint (MinIO, a test server) comes from ``s3_endpoint_url``. Object stores
have no folders, so there, as on Valohai, ``*`` also matches ``/``. An object is not
downloaded again while its size and modification time are unchanged.
"""

from __future__ import annotations

import os
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sweeper.errors import InputError
from sweeper.execution.inputs.base import Source, chunks
from sweeper.execution.inputs.cache import InputCache
from sweeper.execution.inputs.uris import split_wildcard, wildcard_regex


class ObjectSource(Source):
    """One object of a ``pyarrow.fs`` filesystem, with the file info its listing gave."""

    def __init__(
        self, name: str, uri: str, full: str, suffix: str, fs: Any, path: str, info: Any
    ) -> None:
        super().__init__(name, uri, full, suffix)
        self.fs = fs
        self.path = path
        self.info = info

    def fetch(self, cache: InputCache) -> tuple[str, int]:
        """Download the object unless the cache has it at the same size and time."""
        validator = {"size": self.info.size, "mtime_ns": self.info.mtime_ns}
        hit = cache.lookup(self.uri, validator)
        if hit:
            return hit
        try:
            with self.fs.open_input_stream(self.path) as stream:
                sha, size = cache.ingest(chunks(stream))
        except (OSError, ValueError) as exc:
            raise self.error(exc) from exc
        cache.remember(self.uri, self.uri, validator, sha, size)
        return sha, size


class ObjectLister:
    """Lists the objects a URI names, opening each filesystem once.

    ``s3_endpoint_url`` (when set) serves every ``s3://`` URI that names no
    ``endpoint_override`` of its own.
    """

    def __init__(self, s3_endpoint_url: str | None) -> None:
        self.s3_endpoint_url = s3_endpoint_url
        self._filesystems: dict[tuple[str, str, str], Any] = {}

    def sources(self, name: str, uri: str, scheme: str) -> list[Source]:
        """The objects ``uri`` names: one object, or the sorted matches of a wildcard."""
        parts = urlsplit(uri)
        prefix, pattern = split_wildcard(parts.path)
        fs, base = self._filesystem(name, uri, parts.scheme, parts.netloc, prefix, parts.query)
        try:
            infos = _infos(name, uri, fs, base, pattern)
        except (OSError, ValueError) as exc:
            raise InputError(f'input "{name}": cannot read {uri}: {exc}') from exc
        if not infos:
            raise InputError(f'input "{name}": {uri} matched no files')
        query = f"?{parts.query}" if parts.query else ""
        sources: list[Source] = []
        for info, suffix in infos:
            if info.path.startswith("/"):
                file_uri = f"{scheme}://{parts.netloc}{info.path}{query}"
                full = info.path.lstrip("/")
            else:
                file_uri = f"{scheme}://{info.path}{query}"
                full = info.path.split("/", 1)[1] if "/" in info.path else info.path
            sources.append(ObjectSource(name, file_uri, full, suffix, fs, info.path, info))
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


def _infos(name: str, uri: str, fs: Any, base: str, pattern: str | None) -> list[tuple[Any, str]]:
    """``(file info, path after the wildcard's fixed prefix)`` of each object named."""
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
        return [(info, PurePosixPath(base).name)]
    regex = wildcard_regex(pattern, star_crosses_slash=True)
    selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
    infos = []
    for info in fs.get_file_info(selector):
        sub = info.path[len(base) :].lstrip("/")
        if info.type == pafs.FileType.File and regex.match(sub):
            infos.append((info, sub))
    return sorted(infos, key=lambda item: item[0].path)


__all__ = ["ObjectLister", "ObjectSource"]
