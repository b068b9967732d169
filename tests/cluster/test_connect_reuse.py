"""Which running Ray head a sweep without --address joins: a live one of this user, or none."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from sweeper.cluster.connect import REUSE_ENV, running_head


def _listening() -> socket.socket:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server


def test_a_live_head_in_the_address_file_is_joined(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(REUSE_ENV, "1")
    server = _listening()
    address = f"127.0.0.1:{server.getsockname()[1]}"
    current = tmp_path / "ray_current_cluster"
    current.write_text(address + "\n")
    try:
        assert running_head(str(current)) == address
        monkeypatch.setenv(REUSE_ENV, "0")  # the explicit opt-out
        assert running_head(str(current)) is None
    finally:
        server.close()


def test_a_stale_or_missing_address_file_starts_a_new_ray(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(REUSE_ENV, "1")
    server = _listening()
    port = server.getsockname()[1]
    server.close()  # the head was killed: its file stays, nothing listens
    current = tmp_path / "ray_current_cluster"
    current.write_text(f"127.0.0.1:{port}\n")
    assert running_head(str(current)) is None
    assert running_head(str(tmp_path / "missing")) is None
    current.write_text("")
    assert running_head(str(current)) is None
