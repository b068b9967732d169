from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sweeper.errors import StoreError
from sweeper.store import SCHEMA_VERSION, Store


def test_create_writes_marker_and_reopens(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", create=True)
    marker = json.loads((tmp_path / "s" / "sweeper-store.json").read_text())
    assert marker == {"format": "sweeper-store", "schema_version": SCHEMA_VERSION}
    again = Store.open(str(tmp_path / "s"))
    assert again.local_path == store.local_path == tmp_path / "s"


def test_missing_store_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no sweeper store at .*pass --store"):
        Store.open(tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()


def test_empty_folder_needs_create(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no sweeper store"):
        Store.open(tmp_path)
    Store.open(tmp_path, create=True)
    assert (tmp_path / "sweeper-store.json").exists()


def test_folder_with_other_files_is_not_a_store(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(StoreError, match="is not a sweeper store"):
        Store.open(tmp_path, create=True)


def test_foreign_marker_and_newer_version(tmp_path: Path) -> None:
    (tmp_path / "sweeper-store.json").write_text('{"format": "other"}')
    with pytest.raises(StoreError, match="is not a sweeper store"):
        Store.open(tmp_path)
    (tmp_path / "sweeper-store.json").write_text(
        json.dumps({"format": "sweeper-store", "schema_version": SCHEMA_VERSION + 1})
    )
    with pytest.raises(StoreError, match="upgrade sweeper"):
        Store.open(tmp_path)


def test_file_uri_is_local(tmp_path: Path) -> None:
    store = Store.open(f"file://{tmp_path}/u", create=True)
    assert store.local_path == tmp_path / "u"


def test_json_and_text_files(store: Store, tmp_path: Path) -> None:
    store.write_json("executions/x/extra.json", {"a": [1, 2]})
    assert store.read_json("executions/x/extra.json") == {"a": [1, 2]}
    assert store.read_json("executions/x/missing.json") is None
    (tmp_path / "log.txt").write_text("line 1\nline 2\n")
    store.upload_file(tmp_path / "log.txt", "executions/x/logs.txt")
    assert store.exists("executions/x/logs.txt")
    with store.open_text("executions/x/logs.txt") as fh:
        assert fh.read().splitlines() == ["line 1", "line 2"]
    with pytest.raises(StoreError, match="^no executions/x/nope.txt in store "):
        store.open_text("executions/x/nope.txt")
    leftovers = [p.name for p in (store.local_path / "executions" / "x").iterdir()]  # type: ignore[operator]
    assert sorted(leftovers) == ["extra.json", "logs.txt"]


def test_paths_cannot_escape_the_store(store: Store) -> None:
    for bad in ("../outside.json", "/etc/passwd", "a/../../b"):
        with pytest.raises(ValueError, match=f"^not a path inside the store: '{re.escape(bad)}'$"):
            store.write_json(bad, {})
    with pytest.raises(ValueError, match="invalid execution id '../x'"):
        store.execution_dir("../x")
