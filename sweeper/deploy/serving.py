"""The Ray Serve side: one replica class for every endpoint, and the router of aliases.

Each version's endpoint is a Serve application named ``sweeper:<dep>:<ver>:<endpoint>`` at
the route prefix ``/<dep>/<ver>/<endpoint>``; the router is one more application at ``/``,
so Serve's longest-prefix match sends everything else to it: aliases, which it forwards to
the version's replicas through a ``DeploymentHandle``, and unknown or stopped versions,
which get a short 404 at once. The router's table lives in Ray's key-value store (the GCS):
a restarted router reads it again, and moving an alias is a table swap (``reload``), with
no replica started or stopped, so no request is dropped.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from sweeper.config.endpoint import Endpoint

from . import wsgi_shim
from .server import (
    ADDRESS_MARK,
    EndpointStartError,
    Log,
    PlainRequest,
    PlainResponse,
    ServerEndpoint,
    WsgiEndpoint,
    port_in_use,
    run_local_process,
    short_response,
)

if TYPE_CHECKING:
    from sweeper.runtime.base import Runtime

ROUTER_APP = "sweeper-router"
#: The Serve deployment name of every endpoint application (one per application).
ENDPOINT_DEPLOYMENT = "endpoint"
_KV_KEY = b"routes"
_KV_NAMESPACE = "sweeper-deploy"
_STORES_KEY = b"stores"
#: The WSGI shim's name in a version's work folder (the Docker runtime mounts it).
SHIM_NAME = "sweeper-wsgi.py"


def app_name(deployment: str, version: str, endpoint: str) -> str:
    """The Serve application of one endpoint of one version."""
    return f"sweeper:{deployment}:{version}:{endpoint}"


def route_prefix(deployment: str, name: str, endpoint: str) -> str:
    """The URL path of an endpoint by version or alias ``name``."""
    return f"/{deployment}/{name}/{endpoint}"


@dataclass(frozen=True)
class ReplicaSpec:
    """What one replica needs: the endpoint, where its code and files are, how to run it."""

    endpoint: Endpoint
    store_location: str
    code_archive: str
    #: (path relative to the working folder, sha256) of each file.
    files: tuple[tuple[str, str], ...]
    runtime: str
    prefix: str
    ready_timeout_s: float
    run_id: str
    #: sha256 -> bytes of the code snapshot and the files, when they travel with the
    #: deployment (a local store, which other nodes cannot open); else the replica fetches
    #: them from the store at ``store_location`` (an object store every node reaches).
    blobs: tuple[tuple[str, bytes], ...] = ()


def read_routes() -> dict[str, Any]:
    """The router's table in the GCS: ``{deployment: {"name/endpoint": target}}``."""
    from ray.experimental.internal_kv import _internal_kv_get

    raw = _internal_kv_get(_KV_KEY, namespace=_KV_NAMESPACE)
    return json.loads(raw) if raw else {}


def write_routes(routes: dict[str, Any]) -> None:
    """Replace the router's table in the GCS (the router reads it on ``reload``)."""
    from ray.experimental.internal_kv import _internal_kv_put

    _internal_kv_put(_KV_KEY, json.dumps(routes).encode(), overwrite=True, namespace=_KV_NAMESPACE)


def remember_store(location: str) -> None:
    """Add a store to the GCS's list of the stores whose versions this Ray serves
    (``sweep down`` keeps their endpoint logs there)."""
    from ray.experimental.internal_kv import _internal_kv_put

    stores = known_stores()
    if location not in stores:
        data = json.dumps([*stores, location]).encode()
        _internal_kv_put(_STORES_KEY, data, overwrite=True, namespace=_KV_NAMESPACE)


def known_stores() -> list[str]:
    """The stores :func:`remember_store` was told of, oldest first."""
    from ray.experimental.internal_kv import _internal_kv_get

    raw = _internal_kv_get(_STORES_KEY, namespace=_KV_NAMESPACE)
    return list(json.loads(raw)) if raw else []


async def to_plain(request: Request, prefix: str) -> PlainRequest:
    """A Starlette request as plain values, its path relative to ``prefix``."""
    path = request.url.path[len(prefix) :] if request.url.path.startswith(prefix) else "/"
    return PlainRequest(
        method=request.method,
        prefix=prefix,
        path=path or "/",
        query=request.url.query,
        headers=tuple(request.headers.items()),
        body=await request.body(),
    )


def to_response(plain: PlainResponse) -> Response:
    """A plain response as Starlette's."""
    response = Response(content=plain.body, status_code=plain.status)
    for name, value in plain.headers:
        if name.lower() != "content-length":
            response.headers.append(name, value)
    return response


class EndpointReplica:
    """One replica of one endpoint: its code and files in a folder of its own, then the WSGI
    app imported or the server started; a constructor error fails the version."""

    def __init__(self, spec: ReplicaSpec) -> None:
        from sweeper.execution.code import extract_snapshot
        from sweeper.runtime import get_runtime

        self.spec = spec
        self.log = Log()
        # in this node's own temp folder: nothing here needs a disk the driver sees
        work = Path(tempfile.mkdtemp(prefix="sweeper-endpoint-"))
        repository = work / "repository"
        archive = work / "code.tar"
        self._fetch(spec.code_archive, archive)
        extract_snapshot(archive, repository)
        for relpath, sha in spec.files:
            target = (repository / relpath).resolve()
            if not target.is_relative_to(repository.resolve()):
                raise EndpointStartError(f"file path {relpath!r} leaves the working folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            self._fetch(sha, target)
        self.server: ServerEndpoint | None = None
        runtime = get_runtime(spec.runtime)
        if spec.endpoint.wsgi and not runtime.uses_images:
            self.handler: Any = WsgiEndpoint(spec.endpoint.wsgi, repository, self.log)
        else:
            self.server = self._start_server(runtime, work, repository)
            self.handler = self.server

    def _fetch(self, sha: str, target: Path) -> None:
        """One blob into ``target``: from the deployment's own bytes, else from the store."""
        shipped = dict(self.spec.blobs).get(sha)
        if shipped is None:
            from sweeper.store import Store

            Store.open(self.spec.store_location).fetch_blob(sha, target)
            return
        if hashlib.sha256(shipped).hexdigest() != sha:
            raise EndpointStartError(f"the bytes sent for blob {sha} do not match its sha256")
        target.write_bytes(shipped)

    def _start_server(self, runtime: Runtime, work: Path, repository: Path) -> ServerEndpoint:
        """The endpoint's server: its ``server-command``, or (in a runtime with images) the
        WSGI shim serving its ``wsgi`` app inside its image; a local process or a container."""
        endpoint = self.spec.endpoint
        env = {"PORT": str(endpoint.port)}
        if not runtime.uses_images:
            assert endpoint.server_command is not None
            if port_in_use(endpoint.port):
                raise EndpointStartError(
                    f"port {endpoint.port} is in use on this node: another program (or another "
                    "version's server) listens there; stop it, or deploy with --runtime docker"
                )
            run = run_local_process(endpoint.server_command, repository, env)
            return ServerEndpoint(
                run,
                endpoint.port,
                self.log,
                host="127.0.0.1",
                ready_timeout_s=self.spec.ready_timeout_s,
            )
        from sweeper.runtime.base import RunRequest

        request = RunRequest(
            execution_id=self.spec.run_id,
            # the container's own address first: the replica reaches the server there
            commands=(
                f"echo {ADDRESS_MARK}$(hostname -i 2>/dev/null)",
                self._container_command(runtime, work),
            ),
            workdir=work,
            environment=env,
            image=endpoint.image,
            cpus=endpoint.cpu,
            memory_mb=int(endpoint.memory_mb) if endpoint.memory_mb else None,
        )

        def run_container(on_output: Any, stop: Any) -> str:
            result = runtime.run(request, on_output, stop)
            return result.reason or f"exit code {result.exit_code}"

        return ServerEndpoint(
            run_container,
            endpoint.port,
            self.log,
            host=None,
            ready_timeout_s=self.spec.ready_timeout_s,
        )

    def _container_command(self, runtime: Runtime, work: Path) -> str:
        """The server's command in the container: the ``server-command``, or the WSGI shim
        (copied into the work folder) serving the ``wsgi`` target with the image's Python."""
        endpoint = self.spec.endpoint
        if endpoint.server_command is not None:
            return endpoint.server_command
        assert endpoint.wsgi is not None
        (work / SHIM_NAME).write_text(Path(wsgi_shim.__file__).read_text())
        shim = f"{runtime.workdir_root(work)}/{SHIM_NAME}"
        return f"python3 {shim} {shlex.quote(endpoint.wsgi)} {endpoint.port}"

    async def __call__(self, request: Request) -> Response:
        """A request on the version's own path."""
        return to_response(await self.serve_plain(await to_plain(request, self.spec.prefix)))

    async def serve_plain(self, request: PlainRequest) -> PlainResponse:
        """A request in plain values (the router's forwarded calls come here)."""
        return await asyncio.to_thread(self.handler, request)

    async def logs(self) -> str:
        """This replica's endpoint log (the server's output, the handler's tracebacks)."""
        return self.log.text()

    async def pid(self) -> int:
        """This replica's process id."""
        return os.getpid()

    def __del__(self) -> None:
        if getattr(self, "server", None) is not None:
            assert self.server is not None
            self.server.close()


class Router:
    """Aliases to versions, and a short 404 for anything else that reaches ``/``."""

    def __init__(self) -> None:
        self.routes: dict[str, Any] = read_routes()
        self.handles: dict[str, Any] = {}

    async def reload(self) -> int:
        """Read the table again (after an alias moved or a version stopped)."""
        self.routes = read_routes()
        return len(self.routes)

    def _target(self, deployment: str, key: str) -> Any:
        return self.routes.get(deployment, {}).get(key)

    async def __call__(self, request: Request) -> Response:
        """Forward an alias's request to its version, or answer 404."""
        parts = request.url.path.split("/", 4)
        if len(parts) < 4 or not all(parts[1:4]):
            return to_response(
                short_response(404, "not found: use /<deployment>/<version|alias>/<endpoint>/\n")
            )
        deployment, name, endpoint = parts[1:4]
        key = f"{name}/{endpoint}"
        target = self._target(deployment, key)
        if target is None:  # a table newer than ours (another router, a restart): once more
            self.routes = await asyncio.to_thread(read_routes)
            target = self._target(deployment, key)
        if target is None:
            return to_response(
                short_response(
                    404,
                    f"not found: no version or alias {name!r} with endpoint {endpoint!r} "
                    f"in deployment {deployment!r}\n",
                )
            )
        if "app" not in target:
            return to_response(short_response(404, f"{target.get('gone', 'not found')}\n"))
        app = target["app"]
        handle = self.handles.get(app)
        if handle is None:
            handle = self.handles[app] = serve.get_deployment_handle(ENDPOINT_DEPLOYMENT, app)
        plain = await to_plain(request, route_prefix(deployment, name, endpoint))
        return to_response(await handle.serve_plain.remote(plain))


#: Serve's access log, a line per request in every replica and proxy, is off: it cost more
#: than the request on 2 cores (the serve benchmark), and an endpoint's own log is ours.
QUIET = {"enable_access_log": False}
#: The Serve deployments: a constructor that fails once fails the version (no retry loop).
ENDPOINT = serve.deployment(
    name=ENDPOINT_DEPLOYMENT, max_constructor_retry_count=1, logging_config=QUIET
)(EndpointReplica)
ROUTER = serve.deployment(
    name="router", num_replicas=1, ray_actor_options={"num_cpus": 0}, logging_config=QUIET
)(Router)

__all__ = [
    "ENDPOINT",
    "ROUTER",
    "ENDPOINT_DEPLOYMENT",
    "ROUTER_APP",
    "EndpointReplica",
    "ReplicaSpec",
    "Router",
    "app_name",
    "read_routes",
    "route_prefix",
    "write_routes",
]
