"""Endpoints and deployments: items sweeper does not run, still checked as Valohai checks them.

A file whose endpoint Valohai refuses (a name with capitals, both ``wsgi`` and
``server-command``) is refused by the platform as a whole, so ``sweep lint`` reports it as an
error; the steps of such a file can still be run (the error belongs to the endpoint).
"""

from __future__ import annotations

import re
from collections import Counter

from sweeper.config.fields import Fields, is_number
from sweeper.config.loader import YamlMap
from sweeper.config.problems import Problems, quoted

#: Valohai's rule: the name is part of the endpoint's URL.
ENDPOINT_NAME_RE = re.compile(r"^[a-z][a-z0-9-]+$")
_ENDPOINT_KEYS = (
    "name",
    "image",
    "description",
    "files",
    "port",
    "server-command",
    "wsgi",
    "node-selector",
    "resources",
    "tolerations",
    "workspace-volume",
    "shared-volumes",
)
_RESOURCE_KEYS = ("cpu", "memory", "ephemeral-storage", "devices")
_TOLERATION_KEYS = ("key", "operator", "value", "effect")


def check_endpoint(data: YamlMap, problems: Problems) -> str | None:
    """Check the mapping under a top-level ``endpoint`` key; return its name if it has one."""
    f = Fields.named(data, problems, "endpoint", allowed=_ENDPOINT_KEYS)
    name = f.name()
    if name is not None and not ENDPOINT_NAME_RE.match(name):
        f.error(
            "name",
            f"name {quoted(name)} must be lowercase, start with a letter and contain only "
            "letters, digits and dashes (it is part of the endpoint's URL)",
        )
    f.string("image", required=True)
    f.string("description")
    f.string("wsgi")
    if "server-command" in f and not isinstance(data["server-command"], str):
        f.string_list("server-command")
    if ("wsgi" in f) == ("server-command" in f):
        f.error(None, 'exactly one of "wsgi" and "server-command" must be given')
    selector = f.string("node-selector")
    if selector is not None and "=" not in selector:
        f.error("node-selector", 'node-selector must look like "label=value"')
    port = f.number("port")
    if port is not None and not 1025 <= port <= 65535:
        f.error("port", f"port {port} must be between 1025 and 65535")
    for _, item in f.items("files"):
        file = Fields(
            item, problems, prefix=f"{f.prefix}file: ", allowed=("name", "path", "description")
        )
        file.string("name", required=True)
        file.string("path", required=True)
        file.string("description")
    _check_resources(f)
    for _, item in f.items("tolerations"):
        toleration = Fields(
            item, problems, prefix=f"{f.prefix}toleration: ", allowed=_TOLERATION_KEYS
        )
        for key in ("key", "value"):
            toleration.string(key)
        operator = toleration.choice("operator", ("Exists", "Equal"), "", normalize=False)
        if "key" not in item and operator == "Equal":
            toleration.error("operator", 'a toleration without "key" needs operator: Exists')
        toleration.choice(
            "effect", ("PreferNoSchedule", "NoSchedule", "NoExecute"), "", normalize=False
        )
    _check_volumes(f, problems)
    return name


def _check_resources(f: Fields) -> None:
    resources = f.mapping("resources")
    if resources is None:
        return
    r = Fields(resources, f.problems, prefix=f"{f.prefix}resources: ", allowed=_RESOURCE_KEYS)
    for key in ("cpu", "memory", "ephemeral-storage"):
        limits = r.mapping(key)
        if limits is None:
            continue
        limit = Fields(limits, f.problems, prefix=f"{r.prefix}{key}: ", allowed=("min", "max"))
        for bound in ("min", "max"):
            if key == "ephemeral-storage":
                limit.integer(bound)
            else:
                limit.number(bound)
    devices = r.mapping("devices")
    for device, count in (devices or {}).items():
        if not is_number(count) or count < 1:
            r.error("devices", f"devices: {quoted(device)} must be a number of at least 1")


def _check_volumes(f: Fields, problems: Problems) -> None:
    mount_paths: list[str] = []
    for _, item in f.items("shared-volumes"):
        volume = Fields(
            item,
            problems,
            prefix=f"{f.prefix}shared volume: ",
            allowed=("pvc-name", "mount-path", "sub-path", "read-only"),
        )
        volume.string("pvc-name", required=True)
        mount_path = volume.string("mount-path", required=True)
        sub_path = volume.string("sub-path")
        volume.boolean("read-only", False)
        if mount_path is not None:
            mount_paths.append(mount_path)
            if not mount_path.startswith("/"):
                volume.error("mount-path", f'mount-path {quoted(mount_path)} must start with "/"')
        if sub_path is not None and sub_path.startswith("/"):
            volume.error("sub-path", f'sub-path {quoted(sub_path)} must not start with "/"')
    for path, times in Counter(mount_paths).items():
        if times > 1:
            f.error("shared-volumes", f"{times} shared volumes are mounted at {quoted(path)}")
    workspace = f.mapping("workspace-volume")
    if workspace is not None:
        w = Fields(
            workspace,
            problems,
            prefix=f"{f.prefix}workspace volume: ",
            allowed=("mount-path", "size", "storage-class-name"),
        )
        workspace_path = w.string("mount-path", required=True)
        w.require("size")
        w.integer("size", minimum=1)
        w.string("storage-class-name")
        if workspace_path is not None and not workspace_path.startswith("/"):
            w.error("mount-path", f'mount-path {quoted(workspace_path)} must start with "/"')
        if workspace_path is not None and workspace_path in mount_paths:
            w.error(
                "mount-path",
                f"mount-path {quoted(workspace_path)} is already used by a shared volume",
            )


def check_deployment(data: YamlMap, problems: Problems) -> str | None:
    """Check the mapping under a top-level ``deployment`` key; return its name if it has one."""
    f = Fields.named(data, problems, "deployment", allowed=("name", "defaults"))
    # No schema applies to deployments: Valohai takes any name, as long as there is one.
    if "name" not in data:
        f.error(None, 'missing required key "name"')
    name = data.get("name") if isinstance(data.get("name"), str) else None
    # An empty value (null, [], "") is read as no defaults, as Valohai reads it.
    defaults = f.mapping("defaults") if data.get("defaults") else None
    target = defaults.get("target") if defaults is not None else None
    if not target:
        f.warning(
            "defaults",
            "no defaults.target: Valohai cannot create the deployment when a pipeline needs it",
        )
    return name


__all__ = ["ENDPOINT_NAME_RE", "check_deployment", "check_endpoint"]
