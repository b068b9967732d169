"""Which backend a store location needs: a local folder, or a pyarrow filesystem.

Apart from both backends so that a local store opens without importing pyarrow, which the
object-store backend (:mod:`sweeper.store._arrow_backend`) needs from its first line.
"""

from __future__ import annotations

import os
from pathlib import Path

from sweeper.errors import StoreError

from ._backend import Backend, LocalBackend


def open_backend(location: str | os.PathLike[str]) -> Backend:
    """A backend for a local path, a file:// URI or any URI pyarrow.fs understands."""
    text = os.fspath(location)
    if "://" in text and not text.startswith("file://"):
        import pyarrow.fs as pafs

        from ._arrow_backend import ArrowBackend

        try:
            fs, root = pafs.FileSystem.from_uri(text)
        except (ValueError, OSError) as exc:
            raise StoreError(f"cannot open store location {text}: {exc}") from exc
        if isinstance(fs, pafs.LocalFileSystem):
            return LocalBackend(Path(root), text)
        return ArrowBackend(fs, root, text)
    if text.startswith("file://"):
        text = text[len("file://") :]
    root = Path(text).expanduser().absolute()
    return LocalBackend(root, os.fspath(location))
