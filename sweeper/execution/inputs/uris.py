"""Input URIs as text: schemes, wildcards, and the paths an input may read and write."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from sweeper.errors import InputError

#: Schemes pyarrow.fs opens; anything else (besides local paths, http, datum, execution,
#: dataset) is refused.
ARROW_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")
SUPPORTED_SCHEMES = ("file", "http", "https", *ARROW_SCHEMES, "datum", "execution", "dataset")

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def scheme(name: str, uri: str) -> str | None:
    """The URI's scheme (lower case), ``None`` for a plain path; refuses unsupported ones."""
    match = _SCHEME_RE.match(uri)
    if match is None:
        return None
    found = match.group(1).lower()
    if found not in SUPPORTED_SCHEMES:
        raise InputError(
            f'input "{name}": unsupported URI scheme "{found}" in {uri}; '
            f"supported: local paths, {', '.join(s + '://' for s in SUPPORTED_SCHEMES)}"
        )
    return found


def given_uri(uri: str) -> str:
    """A URI given for one execution: an absolute local path becomes ``file://PATH``."""
    text = uri.strip()
    if text.startswith("/") and _SCHEME_RE.match(text) is None:
        return PurePosixPath(text).as_uri()
    return uri


def plain_path(name: str, uri: str) -> str:
    """A plain local path, which must be relative to the project folder."""
    if uri.startswith("/"):
        raise InputError(
            f'input "{name}": absolute path {uri}; local inputs are relative to the project '
            f"folder, use file://{uri} for a file elsewhere"
        )
    return uri


def confine(name: str, uri: str, path: Path, root: Path) -> Path:
    """Resolve ``path`` (following symlinks) and refuse it if it lies outside ``root``."""
    real = path.resolve()
    if not real.is_relative_to(root.resolve()):
        raise InputError(
            f'input "{name}": {uri} resolves to {real}, outside the project folder {root}; '
            f"use a file:// URI for files elsewhere"
        )
    return real


def check_input_name(name: str) -> None:
    """Refuse an input name that cannot be a folder under ``inputs/``."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise InputError(f'input name "{name}" cannot be used as a folder name under inputs/')


def safe_relative(name: str, uri: str, rel: str) -> str:
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


def split_wildcard(path: str) -> tuple[str, str | None]:
    """``"data/**/*.npz"`` -> ``("data", "**/*.npz")``; without a wildcard, ``(path, None)``."""
    positions = [pos for pos in (path.find("*"), path.find("?")) if pos >= 0]
    if not positions:
        return path, None
    cut = path.rfind("/", 0, min(positions))
    if cut < 0:
        return "", path
    return (path[:cut] or "/"), path[cut + 1 :]


def wildcard_regex(pattern: str, *, star_crosses_slash: bool) -> re.Pattern[str]:
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


def walk(top: Path, depth: int | None) -> Iterator[str]:
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


def join(prefix: str, sub: str) -> str:
    """``prefix/sub`` without doubled or leading slashes (``sub`` alone without a prefix)."""
    prefix = prefix.strip("/")
    return f"{prefix}/{sub}" if prefix else sub


__all__ = [
    "ARROW_SCHEMES",
    "SUPPORTED_SCHEMES",
    "check_input_name",
    "confine",
    "given_uri",
    "join",
    "plain_path",
    "safe_relative",
    "scheme",
    "split_wildcard",
    "walk",
    "wildcard_regex",
]
