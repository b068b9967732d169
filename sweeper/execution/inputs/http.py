"""``http://`` and ``https://`` inputs, with basic auth as ``https://user:password@host/...``.

A file is not downloaded again while its ETag or Last-Modified is unchanged (asked with a
conditional GET). The password never reaches a record: the URI kept is masked.
"""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit, urlunsplit

from sweeper.execution.inputs.base import Source, chunks
from sweeper.execution.inputs.cache import InputCache

_HTTP_TIMEOUT_S = 60


class HttpSource(Source):
    """A file at a URL; ``uri`` is what the record keeps (the password masked)."""

    def __init__(self, name: str, uri: str, full: str, url: str, headers: dict[str, str]) -> None:
        super().__init__(name, uri, full, PurePosixPath(full).name)
        self.url = url
        self.headers = headers

    def fetch(self, cache: InputCache) -> tuple[str, int]:
        """Download the file unless the server says the cached copy is current (304)."""
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
                sha, size = cache.ingest(chunks(response))
        except urllib.error.HTTPError as exc:
            if exc.code == 304 and entry is not None:
                return entry["sha256"], entry["size"]
            raise self.error(f"HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise self.error(reason) from exc
        if validator["etag"] or validator["last_modified"]:
            cache.remember(self.url, self.uri, validator, sha, size)
        return sha, size


def http_source(name: str, uri: str) -> Source:
    """The file an ``http(s)://`` URI names; its user and password become a header."""
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
    return HttpSource(name, display, full, url, headers)


__all__ = ["HttpSource", "http_source"]
