"""Local inputs: paths relative to the project folder, and ``file://`` URIs.

A plain path must stay inside the project folder (symlinks followed); ``file:///abs/path``
reads anywhere on this machine. Wildcards follow glob rules: ``*`` stays within one
folder, ``**/`` spans any number of them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from sweeper.errors import InputError
from sweeper.execution.inputs.base import Source, chunks
from sweeper.execution.inputs.cache import InputCache
from sweeper.execution.inputs.uris import (
    confine,
    join,
    plain_path,
    split_wildcard,
    walk,
    wildcard_regex,
)


class LocalSource(Source):
    """A file on this machine; hashed again only when its size or modification time change."""

    def __init__(self, name: str, uri: str, full: str, suffix: str, path: Path) -> None:
        super().__init__(name, uri, full, suffix)
        self.path = path

    def fetch(self, cache: InputCache) -> tuple[str, int]:
        """Copy the file into the cache unless it is there unchanged."""
        try:
            st = self.path.stat()
            key = "file://" + str(self.path.resolve())
            validator = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
            hit = cache.lookup(key, validator)
            if hit:
                return hit
            with self.path.open("rb") as stream:
                sha, size = cache.ingest(chunks(stream))
        except OSError as exc:
            raise self.error(exc.strerror or exc) from exc
        cache.remember(key, self.uri, validator, sha, size)
        return sha, size


def local_sources(name: str, uri: str, scheme: str | None, project_dir: Path) -> list[Source]:
    """The files a plain path (``scheme`` None, inside ``project_dir``) or a ``file://``
    URI names."""
    if scheme is None:
        path = plain_path(name, uri)
        return _list(name, uri, path, project_dir, lambda rel: rel, confined=True)
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise InputError(f'input "{name}": {uri} names another host; use file:///path')
    path = unquote(parts.path)
    return _list(
        name, uri, path.lstrip("/"), Path("/"), lambda rel: "file:///" + rel, confined=False
    )


def _list(
    name: str,
    uri: str,
    rel: str,
    root: Path,
    uri_of: Callable[[str], str],
    *,
    confined: bool,
) -> list[Source]:
    """The files ``rel`` names under ``root`` (each named ``uri_of(its path)``), kept
    inside ``root`` when ``confined``."""
    prefix, pattern = split_wildcard(rel)
    if pattern is None:
        path = root / rel
        real = confine(name, uri, path, root) if confined else path
        if not real.exists():
            raise InputError(f'input "{name}": no such file {uri}')
        if real.is_dir():
            raise InputError(
                f'input "{name}": {uri} is a folder; select its files with a wildcard, '
                f"e.g. {uri.rstrip('/')}/**"
            )
        full = PurePosixPath(rel).as_posix()
        return [LocalSource(name, uri, full, PurePosixPath(full).name, path)]

    top = root / prefix
    if confined:
        confine(name, uri, top, root)
    if not top.is_dir():
        raise InputError(f'input "{name}": no such folder {top} for {uri}')
    regex = wildcard_regex(pattern, star_crosses_slash=False)
    depth = None if "**" in pattern else pattern.count("/") + 1
    sources: list[Source] = []
    for sub in walk(top, depth):
        if not regex.match(sub):
            continue
        path = top / sub
        if confined:
            confine(name, uri_of(join(prefix, sub)), path, root)
        if not path.is_file():
            raise InputError(f'input "{name}": {path} matched {uri} but cannot be read')
        full = join(prefix, sub)
        sources.append(LocalSource(name, uri_of(full), full, sub, path))
    if not sources:
        raise InputError(f'input "{name}": {uri} matched no files')
    return sources


__all__ = ["LocalSource", "local_sources"]
