"""The project a command works on: its valohai.yaml, its folder, its store and its code."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeper.errors import ConfigError

if TYPE_CHECKING:
    from sweeper.store import Store


@dataclass
class Project:
    """A valohai.yaml, the folder it lives in (the code) and the store results go to."""

    config_path: Path
    store_location: str | None = None

    @property
    def directory(self) -> Path:
        """The project folder: where the valohai.yaml is."""
        return self.config_path.parent

    @cached_property
    def config(self) -> Any:
        """The parsed valohai.yaml (raises ConfigError with file and line).

        An item with errors is set aside rather than failing the whole file: running a step
        depends on that step alone (``sweep lint`` still reports everything).
        """
        from sweeper.config import load_config  # not for the commands that only read the store

        if not self.config_path.is_file():
            raise ConfigError(
                f"no valohai.yaml at {self.config_path}: run in a project folder or pass -f PATH"
            )
        return load_config(self.config_path, strict=False)

    @property
    def store_path(self) -> str:
        """The store location: ``--store`` or ``.sweeper/`` in the project folder."""
        return (
            self.store_location
            or os.environ.get("SWEEPER_STORE")
            or str(self.directory / ".sweeper")
        )

    def open_store(self, *, create: bool = False) -> Store:
        """Open (or create) the store."""
        from sweeper.store import Store  # pyarrow: only for the commands that read results

        return Store.open(self.store_path, create=create)

    def snapshot_code(self, store: Store) -> tuple[str, str]:
        """Archive the project's files into the store; return (code version, archive sha256)."""
        from sweeper.execution.code import archive_project, code_version, project_files

        files = project_files(self.directory)
        local = store.local_path
        if local is not None:
            try:
                inside = Path(local).resolve().relative_to(self.directory.resolve()).as_posix()
            except ValueError:
                inside = None
            if inside:
                files = [f for f in files if not (f == inside or f.startswith(inside + "/"))]
        version = code_version(self.directory, files)
        archive = store.put_bytes(archive_project(self.directory, files))
        return version, archive


def project_from(config: str | os.PathLike[str] | None, store: str | None) -> Project:
    """The project for ``-f/--config`` (default ``./valohai.yaml``) and ``--store``."""
    path = Path(config) if config else Path.cwd() / "valohai.yaml"
    return Project(config_path=path.absolute(), store_location=store)
