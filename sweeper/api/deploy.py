"""The Python API of deployments: what ``sweep deploy`` and ``sweep deployment ...`` do.

``sweeper.api.deploy.deploy(["predict"], deployment="staging", files={"predict.model":
"best:SWEEP_ID:model.pkl"})`` snapshots the project's code, makes a version on the Ray that
``--address``/``RAY_ADDRESS``/``sweep up`` names, waits until it is ready or failed and
returns its frozen :class:`~sweeper.deploy.VersionRecord`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from sweeper.config.endpoint import DeploymentBlock, deployment_block
from sweeper.deploy import DeployRequest, FileSource, VersionRecord
from sweeper.deploy import service as _service
from sweeper.project import project_from
from sweeper.runtime import DEFAULT_RUNTIME


def declared(
    deployment: str, *, config: str | os.PathLike[str] | None = None
) -> DeploymentBlock | None:
    """The project's valohai.yaml ``deployment`` block called ``deployment``, if declared."""
    path = project_from(config, None).config_path
    return deployment_block(path.read_text(), deployment, str(path)) if path.is_file() else None


def deploy(
    endpoints: Sequence[str],
    *,
    deployment: str,
    files: Mapping[str, str] | None = None,
    aliases: Sequence[str] = (),
    replicas: int | None = None,
    runtime: str | None = None,
    address: str | None = None,
    config: str | os.PathLike[str] | None = None,
    store: str | None = None,
    ready_timeout_s: float = 120.0,
) -> VersionRecord:
    """Deploy ``endpoints`` of the project's valohai.yaml as a new version of ``deployment``.

    ``files`` maps ``ENDPOINT.FILE`` to a source: ``EXEC_ID:OUTPUT``, ``datum://SHA256``,
    ``best:SWEEP_ID:OUTPUT`` or a local path. ``replicas`` and ``runtime`` not given are the
    ``defaults`` of the valohai.yaml's ``deployment`` block of that name, else 1 and
    :data:`~sweeper.runtime.DEFAULT_RUNTIME` (docker), as ``sweep deploy`` takes them.
    """
    project = project_from(config, store)
    if not project.config_path.is_file():
        from sweeper.errors import ConfigError

        raise ConfigError(f"no valohai.yaml at {project.config_path}: pass -f PATH")
    config_text = project.config_path.read_text()
    block = deployment_block(config_text, deployment, str(project.config_path))
    opened = project.open_store(create=True)
    version, archive = project.snapshot_code(opened)
    request = DeployRequest(
        deployment=deployment,
        endpoints=tuple(endpoints),
        config_text=config_text,
        code_version=version,
        code_archive=archive,
        files=_sources(files or {}),
        aliases=tuple(aliases),
        replicas=replicas or (block and block.replicas) or 1,
        runtime=runtime or (block and block.runtime) or DEFAULT_RUNTIME,
        address=address,
        project_dir=project.directory,
        creator={"kind": "cli", "command": " ".join(["sweep", *sys.argv[1:]])},
        ready_timeout_s=ready_timeout_s,
    )
    return _service.deploy(request, opened)


def _sources(files: Mapping[str, str]) -> tuple[FileSource, ...]:
    """``{"ENDPOINT.FILE": SOURCE}`` read; ConfigError for a key not of that shape."""
    sources = []
    for target, source in files.items():
        try:
            sources.append(FileSource.parse(f"{target}={source}"))
        except ValueError as exc:
            from sweeper.errors import ConfigError

            raise ConfigError(str(exc)) from None
    return tuple(sources)


class Deployments:
    """The deployments of a project's store: list, alias, stop, logs.

    ``Deployments(config="valohai.yaml", store=None, address=None)``: the store next to the
    valohai.yaml (or ``store``) and the Ray that ``address``/``RAY_ADDRESS``/``sweep up``
    names, as the commands take them.
    """

    def __init__(
        self, *, config: str | None = None, store: str | None = None, address: str | None = None
    ) -> None:
        self.store = project_from(config, store).open_store()
        self.address = address

    def versions(self, deployment: str | None = None) -> list[VersionRecord]:
        """Every version (of one deployment, or of all), oldest first."""
        return _service.versions(self.store, deployment)

    def aliases(self, deployment: str) -> dict[str, str]:
        """``{alias: version}`` of a deployment."""
        return self.store.deployments.aliases(deployment)

    def set_alias(self, deployment: str, alias: str, version: str) -> VersionRecord:
        """Point ``alias`` at a ready version (nothing dropped while it moves)."""
        return _service.set_alias(self.store, deployment, alias, version, address=self.address)

    def stop(self, deployment: str, version: str | None = None) -> list[VersionRecord]:
        """Stop one version, or every live version, of a deployment."""
        return _service.stop(self.store, deployment, version, address=self.address)

    def logs(self, deployment: str, version: str, endpoint: str) -> str:
        """The log of a version's endpoint."""
        return _service.logs(self.store, deployment, version, endpoint, address=self.address)


__all__ = ["Deployments", "declared", "deploy"]
