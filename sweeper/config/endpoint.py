"""Endpoints and deployments: checked as Valohai checks them, read into frozen values.

A file whose endpoint Valohai refuses (a name with capitals, both ``wsgi`` and
``server-command``) is refused by the platform as a whole, so ``sweep lint`` reports it as an
error; the steps of such a file can still be run (the error belongs to the endpoint).
:func:`load_endpoints` reads the endpoints ``sweep deploy`` serves (``sweeper.deploy``): an
endpoint with errors is kept aside with them, and asking for it raises them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sweeper.config.fields import Fields, is_number
from sweeper.config.loader import YamlMap, line_of, load_yaml
from sweeper.config.problems import Problems, listed, quoted
from sweeper.errors import ConfigError

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
    if name is not None and not _SWEEPER_NAME_RE.match(name):
        f.warning(
            "name",
            f"deployment name {quoted(name)} is not one sweeper can serve (it is part of the "
            "URL): 1-63 lowercase letters, digits, '-' or '_', starting with a letter or digit",
        )
    # An empty value (null, [], "") is read as no defaults, as Valohai reads it.
    defaults = f.mapping("defaults") if data.get("defaults") else None
    target = defaults.get("target") if defaults is not None else None
    if not target:
        f.warning(
            "defaults",
            "no defaults.target: Valohai cannot create the deployment when a pipeline needs it",
        )
    if defaults is not None:
        # Valohai takes any key under defaults: sweeper's own are checked, and a bad one
        # blocks ``sweep deploy`` of that deployment without making the file invalid
        d = Fields(
            defaults, problems.blocking(), prefix=f"{f.prefix}defaults: ", allowed=tuple(defaults)
        )
        d.string("target")
        d.integer("replicas", minimum=1)
        d.string("runtime")  # a name --runtime takes: the runtimes check it when it is used
    return name


#: sweeper's rule for a deployment's name (``sweeper.store``'s, repeated: config imports no store).
_SWEEPER_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class DeploymentBlock:
    """A top-level ``deployment`` block: the defaults ``sweep deploy --deployment NAME`` takes
    for that deployment where the command does not say otherwise.

    ``target`` is Valohai's deployment target (a Kubernetes cluster there), only shown:
    sweeper's one target is the Ray cluster. ``replicas`` and ``runtime`` are sweeper's own
    keys under ``defaults``.
    """

    name: str
    target: str | None = None
    replicas: int | None = None
    runtime: str | None = None

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> DeploymentBlock:
        """Read a block :func:`check_deployment` found without errors."""
        defaults = data.get("defaults") or {}
        replicas = defaults.get("replicas")
        target = defaults.get("target")
        return cls(
            name=str(data["name"]),
            target=str(target) if target else None,
            replicas=int(replicas) if replicas is not None else None,
            runtime=defaults.get("runtime"),
        )


#: Valohai's default port of a ``server-command`` endpoint.
DEFAULT_PORT = 8000


@dataclass(frozen=True)
class EndpointFile:
    """A file an endpoint needs (a model), placed at ``path`` relative to its working folder."""

    name: str
    path: str
    description: str = ""


@dataclass(frozen=True)
class Endpoint:
    """One ``endpoint`` block: what serves it (``wsgi`` or ``server-command``), its files and
    the resources of each replica (``cpu``: cores, ``memory_mb``, ``gpus``: nvidia.com/gpu)."""

    name: str
    image: str
    wsgi: str | None = None
    server_command: str | None = None
    port: int = DEFAULT_PORT
    description: str = ""
    files: tuple[EndpointFile, ...] = ()
    cpu: float | None = None
    memory_mb: float | None = None
    gpus: float = 0.0

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Endpoint:
        """Read a block :func:`check_endpoint` found without errors."""
        command = data.get("server-command")
        if isinstance(command, list):
            command = " && ".join(str(c) for c in command)
        resources = data.get("resources") or {}
        devices = resources.get("devices") or {}
        return cls(
            name=str(data["name"]),
            image=str(data["image"]),
            wsgi=data.get("wsgi"),
            server_command=command,
            port=int(data.get("port", DEFAULT_PORT)),
            description=str(data.get("description") or ""),
            files=tuple(
                EndpointFile(str(f["name"]), str(f["path"]), str(f.get("description") or ""))
                for f in data.get("files") or ()
            ),
            cpu=_limit(resources.get("cpu")),
            memory_mb=_limit(resources.get("memory")),
            gpus=float(devices.get("nvidia.com/gpu", 0)),
        )

    def file(self, name: str) -> EndpointFile:
        """The file called ``name``; :class:`ConfigError` naming the endpoint's files."""
        for item in self.files:
            if item.name == name:
                return item
        raise ConfigError(
            f"endpoint {quoted(self.name)} has no file {quoted(name)}; "
            f"its files: {listed(f.name for f in self.files) if self.files else 'none'}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready), as a version record keeps it: the fields by name."""
        return {**asdict(self), "files": [asdict(f) for f in self.files]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Endpoint:
        """The endpoint :meth:`to_dict` wrote."""
        return cls(**{**data, "files": tuple(EndpointFile(**f) for f in data.get("files", ()))})


def _limit(value: Any) -> float | None:
    """A resource's ``min`` (what a replica is given), else its ``max``, else None."""
    if isinstance(value, Mapping):
        value = value.get("min", value.get("max"))
    return float(value) if is_number(value) else None


@dataclass(frozen=True)
class Endpoints:
    """The endpoints of one valohai.yaml by name, and the errors of those that have some."""

    items: Mapping[str, Endpoint] = field(default_factory=dict)
    broken: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def get(self, name: str) -> Endpoint:
        """The endpoint ``name``; :class:`ConfigError` with its errors, or naming the known ones."""
        if name in self.broken:
            raise ConfigError("\n".join(self.broken[name]))
        if name not in self.items:
            known = listed([*self.items, *self.broken]) if self.items or self.broken else "none"
            raise ConfigError(f"unknown endpoint {quoted(name)}; known endpoints: {known}")
        return self.items[name]


def deployment_block(
    text: str, name: str, filename: str = "valohai.yaml"
) -> DeploymentBlock | None:
    """The ``deployment`` block called ``name`` of a valohai.yaml's text (a later one of the
    same name wins, as valohai-yaml reads them), None when none is declared; ConfigError with
    that block's problems when it cannot be used (other blocks are not its concern)."""
    problems = Problems(filename)
    data = load_yaml(text, problems)
    if problems.items:
        raise ConfigError("\n".join(str(p) for p in problems.items))
    found: DeploymentBlock | None = None
    for item in data if isinstance(data, list) else ():
        body = item.get("deployment") if isinstance(item, Mapping) else None
        if not isinstance(body, YamlMap) or body.get("name") != name:
            continue
        mark = len(problems.items)
        check_deployment(body, problems)
        errors = [str(p) for p in problems.since(mark) if p.level == "error" or p.blocks_run]
        if errors:
            raise ConfigError("\n".join(errors))
        found = DeploymentBlock.parse(body)
    return found


def load_endpoints(text: str, filename: str = "valohai.yaml") -> Endpoints:
    """The ``endpoint`` blocks of a valohai.yaml's text (its other items are not read here)."""
    problems = Problems(filename)
    data = load_yaml(text, problems)
    if problems.items:
        raise ConfigError("\n".join(str(p) for p in problems.items))
    items: dict[str, Endpoint] = {}
    broken: dict[str, tuple[str, ...]] = {}
    for item in data if isinstance(data, list) else ():
        body = item.get("endpoint") if isinstance(item, Mapping) else None
        if not isinstance(body, YamlMap):
            continue
        mark = len(problems.items)
        name = check_endpoint(body, problems) or f"(line {line_of(body)})"
        errors = [str(p) for p in problems.since(mark) if p.level == "error"]
        if errors:
            broken[name] = tuple(errors)
        else:
            items[name] = Endpoint.parse(body)
    return Endpoints(items, broken)


__all__ = [
    "DEFAULT_PORT",
    "ENDPOINT_NAME_RE",
    "DeploymentBlock",
    "Endpoint",
    "EndpointFile",
    "Endpoints",
    "check_deployment",
    "check_endpoint",
    "deployment_block",
    "load_endpoints",
]
