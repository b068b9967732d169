"""The code snapshot of a project folder that is not a git checkout: regular files only."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from sweeper.execution.code import archive_project, code_version, project_files


def test_sockets_and_fifos_in_the_project_are_not_code(tmp_path: Path) -> None:
    """A Ray temp folder or a named pipe inside the project (say ``SWEEPER_HOME`` put there)
    must not break the snapshot: opening a socket fails, opening a FIFO waits forever."""
    (tmp_path / "train.py").write_text("print(1)\n")
    (tmp_path / "ray").mkdir()
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "ray" / "raylet"))
    os.mkfifo(tmp_path / "pipe")
    try:
        files = project_files(tmp_path)
        assert files == ["train.py"]
        assert code_version(tmp_path, files).startswith("files:")
        assert archive_project(tmp_path, files)
    finally:
        server.close()
