"""Dataset versions through the real `sweep` command: made by one execution (a step written
with valohai-utils), read by the next (`latest` pinned in its record), immutable, listed by
`sweep datasets`, on a local store and an `s3://` store (a real moto server)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import sweep_cli
from tests.execution.dataset_steps import dataset_project
from tests.store import conftest as store_fixtures

pytestmark = pytest.mark.timeout(900)

s3_endpoint = store_fixtures.s3_endpoint
s3_uri = store_fixtures.s3_uri


@pytest.fixture
def project(make_project: Any) -> Path:
    return dataset_project(make_project)


def _run(project: Path, step: str, *args: str, ok: bool = True) -> dict[str, Any]:
    proc = sweep_cli(
        "run", step, *args, "--runtime", "local", "--json", "-f", str(project / "valohai.yaml"),
        cwd=project, timeout=280,
    )  # fmt: skip
    assert (proc.returncode == 0) is ok, proc.stderr
    return dict(json.loads(proc.stdout))


def _seen(project: Path, record: dict[str, Any], *store: str) -> dict[str, str]:
    out = project / f"seen-{record['id']}"
    sweep_cli("outputs", record["id"], "-d", str(out), *store, cwd=project, check=True)
    return dict(json.loads((out / "seen.json").read_text()))


def _datasets(project: Path, *args: str) -> list[dict[str, Any]]:
    proc = sweep_cli("datasets", *args, "--json", cwd=project, check=True)
    return list(json.loads(proc.stdout))


def test_a_version_made_by_one_execution_is_read_by_the_next(project: Path) -> None:
    made = _run(project, "make")
    assert [v["uri"] for v in made["dataset_versions"]] == ["dataset://shapes/v1"]
    used = _run(project, "use")
    # every file of the version, under inputs/<input name>/, with sha256 and its maker
    assert _seen(project, used) == {"train.csv": "x\n1\n", "test.csv": "x\n2\nv1"}
    for item in used["inputs"]:
        assert item["uri"] == "dataset://shapes/v1"  # `latest` as the version it meant
        assert item["producer_execution_id"] == made["id"]
        mine = next(o for o in made["outputs"] if o["path"].endswith(item["path"][7:]))
        assert item["sha256"] == mine["sha256"]
        assert item["sha256"] == hashlib.sha256(mine_bytes(project, made, mine)).hexdigest()
    assert used["spec"]["inputs"] == {"shapes": ["dataset://shapes/v1"]}

    _run(project, "make", "-p", "version=v2")
    newer = _run(project, "use")
    assert _seen(project, newer)["test.csv"] == "x\n2\nv2"
    pinned = _run(project, "use", "--input", "shapes=dataset://shapes/v1")
    assert _seen(project, pinned)["test.csv"] == "x\n2\nv1"

    listed = _datasets(project)
    assert [(v["uri"], v["made_by"], len(v["files"]), v["size"]) for v in listed] == [
        ("dataset://shapes/v1", made["id"], 2, 4 + 6),
        ("dataset://shapes/v2", listed[1]["made_by"], 2, 4 + 6),
    ]
    assert listed[0]["used_by"] == [used["id"], pinned["id"]]
    assert listed[1]["used_by"] == [newer["id"]]
    assert _datasets(project, "shapes") == listed
    text = sweep_cli("datasets", "shapes", cwd=project, check=True).stdout
    assert "more/test.csv" in text and made["id"] in text
    # the lineage runs through the dataset
    lineage = json.loads(sweep_cli("lineage", used["id"], "--json", cwd=project, check=True).stdout)
    assert made["id"] in json.dumps(lineage)


def mine_bytes(project: Path, made: dict[str, Any], output: dict[str, Any]) -> bytes:
    """The bytes of one output of ``made``, fetched from the store."""
    out = project / f"outputs-{made['id']}"
    if not out.exists():
        sweep_cli("outputs", made["id"], "-d", str(out), cwd=project, check=True)
    return (out / output["path"]).read_bytes()


def test_a_version_never_changes(project: Path) -> None:
    first = _run(project, "make")
    again = _run(project, "make", "-p", "tag=changed")
    assert again["status"] == "complete"  # the execution itself is fine
    assert "dataset_versions" not in again
    assert len(again["warnings"]) == 1
    assert "dataset://shapes/v1 not made: it exists" in again["warnings"][0]
    assert first["id"] in again["warnings"][0]
    log = sweep_cli("logs", again["id"], cwd=project, check=True).stdout
    assert "sweeper: warning: dataset://shapes/v1 not made" in log
    # a failed execution makes no version either
    failed = _run(project, "make", "-p", "version=v3", "-p", "fail=true", ok=False)
    assert failed["status"] == "error" and "dataset_versions" not in failed
    assert failed["warnings"] == ["dataset://shapes/v3 not made: the execution did not complete"]

    (only,) = _datasets(project)
    assert (only["uri"], only["made_by"]) == ("dataset://shapes/v1", first["id"])
    used = _run(project, "use")
    assert _seen(project, used)["test.csv"] == "x\n2\nv1"


def test_an_unknown_version_is_one_error_paragraph(project: Path) -> None:
    _run(project, "make")
    proc = sweep_cli(
        "run", "use", "--input", "shapes=dataset://shapes/v7", "--runtime", "local",
        "-f", str(project / "valohai.yaml"), cwd=project, timeout=280,
    )  # fmt: skip
    assert proc.returncode != 0
    assert proc.stderr.startswith("sweep: error: ")
    assert (
        "dataset://shapes/v7: no such dataset version in the store; shapes has: v1" in proc.stderr
    )
    assert "Traceback" not in proc.stderr
    missing = sweep_cli("datasets", "nope", cwd=project)
    assert missing.returncode != 0 and missing.stderr.startswith("sweep: error: no dataset")


def test_made_and_read_on_an_s3_store(project: Path, s3_uri: str) -> None:
    store = ("--store", s3_uri)
    made = _run(project, "make", *store)
    used = _run(project, "use", *store)
    assert not (project / ".sweeper").exists(), "an s3:// run wrote a local store"
    assert _seen(project, used, *store) == {"train.csv": "x\n1\n", "test.csv": "x\n2\nv1"}
    assert {i["producer_execution_id"] for i in used["inputs"]} == {made["id"]}
    listed = _datasets(project, *store)
    assert [(v["uri"], v["used_by"]) for v in listed] == [("dataset://shapes/v1", [used["id"]])]
