"""The values of a deployment: what to deploy (:class:`DeployRequest`) and what a version is
(:class:`VersionRecord`), both frozen, so a pipeline node hands one in and gets one back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from sweeper.config.endpoint import Endpoint


class VersionStatus(str, Enum):
    """Where a version stands; ``failed`` comes with a reason, ``stopped`` is final."""

    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class FileSource:
    """``--file ENDPOINT.FILE=SOURCE``: where one endpoint file comes from.

    ``source`` is ``EXEC_ID:OUTPUT`` (an execution's output), ``datum://SHA256``,
    ``best:SWEEP_ID:OUTPUT`` (that output of a sweep's best trial) or a local path.
    """

    endpoint: str
    file: str
    source: str

    @classmethod
    def parse(cls, text: str) -> FileSource:
        """Read ``ENDPOINT.FILE=SOURCE``; ValueError saying what is wrong."""
        target, sep, source = text.partition("=")
        endpoint, dot, name = target.partition(".")
        if not (sep and dot and endpoint and name and source):
            raise ValueError(f"--file {text!r} must look like ENDPOINT.FILE=SOURCE")
        return cls(endpoint, name, source)


@dataclass(frozen=True)
class PinnedFile:
    """An endpoint file pinned by content: placed at ``path``, made by ``producer`` if known."""

    sha256: str
    #: (endpoint, file name): the file this pins
    endpoint: str
    name: str
    path: str
    producer_execution_id: str | None
    source: str


@dataclass(frozen=True)
class DeployRequest:
    """Everything :func:`sweeper.deploy.deploy` needs to make one version.

    ``config_text`` is the valohai.yaml at ``code_version`` (whose files are the store blob
    ``code_archive``); ``project_dir`` is where local file paths are read from. ``creator``
    says who asked: ``{"kind": "cli", "command": ...}`` or a pipeline run and node.
    """

    deployment: str
    endpoints: tuple[str, ...]
    config_text: str
    code_version: str
    code_archive: str
    files: tuple[FileSource, ...] = ()
    aliases: tuple[str, ...] = ()
    replicas: int = 1
    runtime: str = "local"
    address: str | None = None
    project_dir: Path = Path(".")
    creator: Mapping[str, Any] = field(default_factory=dict)
    #: How long a replica may take to become ready (a server to answer), in seconds.
    ready_timeout_s: float = 120.0


@dataclass(frozen=True, kw_only=True)
class VersionRecord:
    """One immutable version of a deployment (``version.json``; one row per state)."""

    version_id: str
    deployment: str
    version: str
    status: VersionStatus
    reason: str | None = None
    created_at: datetime
    endpoints: tuple[Endpoint, ...]
    files: tuple[PinnedFile, ...]
    replicas: int
    code_version: str
    code_archive: str
    creator: Mapping[str, Any]
    runtime: str
    image_digests: Mapping[str, str] = field(default_factory=dict)
    ready_at: datetime | None = None
    stopped_at: datetime | None = None
    #: The Serve HTTP address it was deployed behind (``http://host:port``).
    base_url: str = ""

    def urls(self, alias: str | None = None) -> dict[str, str]:
        """Each endpoint's URL, by version or by ``alias``."""
        name = alias or self.version
        return {
            e.name: f"{self.base_url}/{self.deployment}/{name}/{e.name}/" for e in self.endpoints
        }

    def moved(self, status: VersionStatus, reason: str | None = None) -> VersionRecord:
        """This version in a new state (times set: ``ready_at``, ``stopped_at``)."""
        now = datetime.now(timezone.utc)
        changes: dict[str, Any] = {"status": status, "reason": reason}
        if status is VersionStatus.READY:
            changes["ready_at"] = now
        if status is VersionStatus.STOPPED:
            changes["stopped_at"] = now
            changes["reason"] = reason or self.reason
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The stored form (``version.json``)."""
        return {
            "version_id": self.version_id,
            "deployment": self.deployment,
            "version": self.version,
            "status": self.status.value,
            "reason": self.reason,
            "endpoints": [e.to_dict() for e in self.endpoints],
            "files": [vars(f) for f in self.files],
            "code_version": self.code_version,
            "code_archive": self.code_archive,
            "runtime": self.runtime,
            "replicas": self.replicas,
            "creator": dict(self.creator),
            "image_digests": dict(self.image_digests),
            "created_at": self.created_at.isoformat(),
            "ready_at": self.ready_at.isoformat() if self.ready_at else None,
            "stopped_at": self.stopped_at.isoformat() if self.stopped_at else None,
            "base_url": self.base_url,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VersionRecord:
        """The record :meth:`to_dict` wrote."""

        def when(key: str) -> datetime | None:
            value = data.get(key)
            return datetime.fromisoformat(value) if value else None

        created = when("created_at")
        assert created is not None, "a version record always has created_at"
        return cls(
            version_id=str(data["version_id"]),
            deployment=str(data["deployment"]),
            version=str(data["version"]),
            status=VersionStatus(data["status"]),
            reason=data.get("reason"),
            endpoints=tuple(Endpoint.from_dict(e) for e in data.get("endpoints", ())),
            files=tuple(PinnedFile(**f) for f in data.get("files", ())),
            code_version=str(data.get("code_version", "")),
            code_archive=str(data.get("code_archive", "")),
            runtime=str(data.get("runtime", "")),
            replicas=int(data.get("replicas", 1)),
            creator=dict(data.get("creator") or {}),
            image_digests=dict(data.get("image_digests") or {}),
            created_at=created,
            ready_at=when("ready_at"),
            stopped_at=when("stopped_at"),
            base_url=str(data.get("base_url", "")),
        )


__all__ = ["DeployRequest", "FileSource", "PinnedFile", "VersionRecord", "VersionStatus"]
