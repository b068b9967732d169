"""Deployments: valohai.yaml endpoints served on Ray Serve, as versions with aliases.

``deploy(DeployRequest, store) -> VersionRecord`` makes a version (see
:mod:`sweeper.deploy.service`); docs/deployments.md describes the model, the URLs and where
deployments run. Importing this package loads no Ray: :mod:`.serving` (Serve) is loaded by
the operations that talk to the cluster.
"""

from .model import DeployRequest, FileSource, PinnedFile, VersionRecord, VersionStatus

__all__ = ["DeployRequest", "FileSource", "PinnedFile", "VersionRecord", "VersionStatus"]
