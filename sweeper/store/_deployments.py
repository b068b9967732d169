"""Deployment versions in the store: ``version.json`` per version, the aliases, and rows.

Layout (see docs/store.md, "Deployments")::

    deployments/<deployment>/<version>/version.json   the version record (atomic rewrite)
    deployments/<deployment>/<version>/logs/<endpoint>.log   an endpoint's log, kept at stop
    deployments/<deployment>/aliases.json             {alias: version} (atomic rewrite)
    datasets/deployment_versions/part-*.parquet        one row per state a version reached

A version is numbered ``v1``, ``v2``... within its deployment under a store lock; the JSON
files are written whole to a temporary name and renamed, and a row part is published the
same way, so ``kill -9`` at any point leaves either the old or the new state. The latest row
of a version (by ``updated_at``) is its state; ``version.json`` is the source of truth.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

from sweeper.errors import StoreError

from ._backend import Backend
from ._locks import store_lock
from ._parts import Parts

DATASET = "deployment_versions"
_TIMESTAMP = pa.timestamp("us", tz="UTC")
#: One row per state a version reached; JSON columns hold lists and mappings.
_STRINGS = "version_id deployment version status reason runtime code_version".split()
_JSON_COLUMNS = ("image_digests", "endpoints", "files", "creator")
_TIMES = ("created_at", "ready_at", "stopped_at", "updated_at")
VERSIONS = pa.schema(
    [(name, pa.string()) for name in (*_STRINGS, *_JSON_COLUMNS)]
    + [("replicas", pa.int64())]
    + [(name, _TIMESTAMP) for name in _TIMES]
)
_VERSION_RE = re.compile(r"^v([1-9][0-9]*)$")
#: A deployment's or an alias's name: part of a URL path.
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def check_name(kind: str, name: str) -> str:
    """``name`` when it can be a deployment or alias name, else StoreError saying why."""
    if not NAME_RE.match(name):
        raise StoreError(
            f"{kind} name {name!r} must be 1-63 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit (it is part of the URL)"
        )
    if kind == "alias" and _VERSION_RE.match(name):
        raise StoreError(f"alias {name!r} looks like a version name: pick another")
    return name


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


class Deployments:
    """The deployment versions and aliases of one store (``Store.deployments``)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def _dir(self, deployment: str) -> str:
        return f"deployments/{check_name('deployment', deployment)}"

    def names(self) -> list[str]:
        """The deployments that have at least one version."""
        return sorted(self.backend.list_dirs("deployments"))

    def version_names(self, deployment: str) -> list[str]:
        """A deployment's versions, oldest first (``v1``, ``v2``...)."""
        found = [v for v in self.backend.list_dirs(self._dir(deployment)) if _VERSION_RE.match(v)]
        return sorted(found, key=lambda v: int(v[1:]))

    def new_version(self, deployment: str, data: Mapping[str, Any]) -> str:
        """Number the next version of ``deployment`` and write ``record`` as it (status as
        given); the version's name. Two writers at once get two numbers (a store lock)."""
        with store_lock(self.backend, f"locks/deployment-{check_name('deployment', deployment)}"):
            names = self.version_names(deployment)
            version = f"v{int(names[-1][1:]) + 1 if names else 1}"
            self.put(deployment, version, {**data, "version": version})
        return version

    def put(self, deployment: str, version: str, data: Mapping[str, Any]) -> None:
        """Write a version's record (``version.json``, ``data``), then its row."""
        rel = f"{self._dir(deployment)}/{version}/version.json"
        self.backend.write_bytes(rel, (json.dumps(dict(data), default=str) + "\n").encode())
        row = {c: data.get(c) for c in VERSIONS.names}
        for column in _JSON_COLUMNS:
            row[column] = json.dumps(data.get(column), default=str)
        for column in _TIMES[:-1]:
            row[column] = _time(data.get(column))
        row["updated_at"] = datetime.now(timezone.utc)
        Parts(self.backend, DATASET).write(pa.Table.from_pylist([row], schema=VERSIONS))

    def get(self, deployment: str, version: str) -> dict[str, Any] | None:
        """A version's record, or None when there is none."""
        if not _VERSION_RE.match(version):
            return None
        raw = self.backend.read_bytes(f"{self._dir(deployment)}/{version}/version.json")
        if raw is None:
            return None
        data = json.loads(raw)
        return data if isinstance(data, dict) else None

    def aliases(self, deployment: str) -> dict[str, str]:
        """``{alias: version}`` of a deployment."""
        raw = self.backend.read_bytes(f"{self._dir(deployment)}/aliases.json")
        data = json.loads(raw) if raw else {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def set_aliases(self, deployment: str, aliases: Mapping[str, str]) -> None:
        """Replace a deployment's aliases (one atomic write)."""
        rel = f"{self._dir(deployment)}/aliases.json"
        self.backend.write_bytes(rel, (json.dumps(dict(sorted(aliases.items()))) + "\n").encode())

    def _log_path(self, deployment: str, version: str, endpoint: str) -> str:
        if not _VERSION_RE.match(version) or not re.match(r"^[a-z][a-z0-9-]+$", endpoint):
            raise StoreError(f"no log for version {version!r}, endpoint {endpoint!r}")
        return f"{self._dir(deployment)}/{version}/logs/{endpoint}.log"

    def put_log(self, deployment: str, version: str, endpoint: str, text: str) -> None:
        """Keep an endpoint's log, read from its replica when the version stopped."""
        self.backend.write_bytes(self._log_path(deployment, version, endpoint), text.encode())

    def log(self, deployment: str, version: str, endpoint: str) -> str | None:
        """An endpoint's kept log, or None when none was kept."""
        raw = self.backend.read_bytes(self._log_path(deployment, version, endpoint))
        return raw.decode(errors="replace") if raw is not None else None

    def rows(self) -> pa.Table:
        """Every row of the ``deployment_versions`` dataset (all states, all versions)."""
        return Parts(self.backend, DATASET).table()


__all__ = ["DATASET", "NAME_RE", "VERSIONS", "Deployments", "check_name"]
