"""Deploying, aliasing, stopping: the operations the CLI, the API and a pipeline node call.

:func:`deploy` is the one entry point that makes a version: a frozen
:class:`~sweeper.deploy.model.DeployRequest` in, a frozen
:class:`~sweeper.deploy.model.VersionRecord` out (``ready`` or ``failed`` with its reason).
Bad input that is known before anything runs (an unknown endpoint or file, a port another
version owns) is a :class:`~sweeper.errors.SweeperError` and deploys nothing; what only a
replica can find out (an app that does not import, a server that never answers) makes a
``failed`` version. Nothing that already serves is touched by either.
"""

from __future__ import annotations

import getpass
import re
import time
from collections.abc import Iterable
from datetime import datetime, timezone

from sweeper.config.endpoint import Endpoint, load_endpoints
from sweeper.errors import ConfigError, SweeperError
from sweeper.execution.ids import new_execution_id
from sweeper.store import Store
from sweeper.store._deployments import check_name

from .files import pin_files, shipped_blobs
from .model import DeployRequest, VersionRecord, VersionStatus
from .place import Place, find_place, join

#: Seconds between two looks at Serve's application status while a version starts.
_POLL_S = 0.2


def _records(store: Store, deployment: str) -> list[VersionRecord]:
    versions = store.deployments
    found = (versions.get(deployment, v) for v in versions.version_names(deployment))
    return [VersionRecord.from_dict(r) for r in found if r is not None]


def versions(store: Store, deployment: str | None = None) -> list[VersionRecord]:
    """Every version of one deployment (or of all), oldest first."""
    names = [deployment] if deployment else store.deployments.names()
    return [r for name in names for r in _records(store, name)]


def get_version(store: Store, deployment: str, version: str) -> VersionRecord:
    """One version's record; SweeperError naming the versions there are."""
    data = store.deployments.get(deployment, version)
    if data is None:
        known = ", ".join(store.deployments.version_names(deployment)) or "none"
        raise SweeperError(
            f"deployment {deployment!r} has no version {version!r}; versions: {known}"
        )
    return VersionRecord.from_dict(data)


def _check(request: DeployRequest, store: Store) -> tuple[Endpoint, ...]:
    """The endpoints to deploy; every error that needs no cluster, raised before anything runs."""
    from sweeper.runtime import get_runtime

    check_name("deployment", request.deployment)
    for alias in request.aliases:
        check_name("alias", alias)
    if request.replicas < 1:
        raise SweeperError(f"--replicas must be at least 1, not {request.replicas}")
    if not request.endpoints:
        raise ConfigError("name at least one endpoint to deploy")
    catalog = load_endpoints(request.config_text)
    endpoints = tuple(catalog.get(name) for name in dict.fromkeys(request.endpoints))
    if get_runtime(request.runtime).uses_images:
        return endpoints
    for endpoint in endpoints:
        if endpoint.server_command is None:
            continue
        if request.replicas > 1:
            raise SweeperError(
                f"endpoint {endpoint.name!r}: {request.replicas} replicas of a server-command "
                f"cannot all own port {endpoint.port} in the local runtime; use --runtime docker"
            )
        owner = _port_owner(store, endpoint.port)
        if owner is not None:
            raise SweeperError(
                f"endpoint {endpoint.name!r}: port {endpoint.port} is owned by {owner} in the "
                "local runtime; stop that version first (`sweep deployment stop`), or deploy "
                "with --runtime docker"
            )
    return endpoints


def _port_owner(store: Store, port: int) -> str | None:
    """The live local-runtime version endpoint that owns ``port``, if any."""
    from sweeper.runtime import get_runtime

    for record in versions(store):
        live = record.status in (VersionStatus.READY, VersionStatus.STARTING)
        if not live or get_runtime(record.runtime).uses_images:
            continue
        for endpoint in record.endpoints:
            if endpoint.server_command is not None and endpoint.port == port:
                return f"{record.deployment} {record.version} ({endpoint.name})"
    return None


def deploy(request: DeployRequest, store: Store, *, place: Place | None = None) -> VersionRecord:
    """Make a version of ``request.deployment`` and wait until it is ready or failed.

    A ready version takes ``request.aliases``. Raises SweeperError for bad input known
    before anything runs; a version that fails to start is returned ``failed`` with its
    reason (its replicas removed), nothing else disturbed.
    """
    endpoints = _check(request, store)
    files = pin_files(endpoints, request.files, store, request.project_dir)
    blobs = shipped_blobs(store, [request.code_archive, *(f.sha256 for f in files)])
    place = place or find_place(request.address)
    digests = _digests(request, endpoints)
    join(place)
    _ensure_router()
    record = VersionRecord(
        version_id=new_execution_id(),
        deployment=request.deployment,
        version="",
        status=VersionStatus.STARTING,
        endpoints=endpoints,
        files=files,
        code_version=request.code_version,
        code_archive=request.code_archive,
        runtime=request.runtime,
        replicas=request.replicas,
        creator={"user": getpass.getuser(), **request.creator},
        created_at=datetime.now(timezone.utc),
        image_digests=digests,
        base_url=place.base_url,
    )
    version = store.deployments.new_version(request.deployment, record.to_dict())
    record = VersionRecord.from_dict({**record.to_dict(), "version": version})
    reason = _start(record, store, request.ready_timeout_s, blobs)
    final = record.moved(VersionStatus.FAILED if reason else VersionStatus.READY, reason)
    store.deployments.put(final.deployment, final.version, final.to_dict())
    if final.status is VersionStatus.READY:
        aliases = {**store.deployments.aliases(final.deployment)}
        aliases.update({alias: final.version for alias in request.aliases})
        store.deployments.set_aliases(final.deployment, aliases)
    publish_routes(store, final.deployment)
    return final


def _digests(request: DeployRequest, endpoints: Iterable[Endpoint]) -> dict[str, str]:
    from sweeper.runtime import get_runtime

    runtime = get_runtime(request.runtime)
    if not runtime.uses_images:
        return {}
    # both kinds run in their image there: a wsgi app in the WSGI shim (serving.py)
    return {e.name: runtime.resolve_image(e.image, "missing") or "" for e in endpoints}


def _ensure_router() -> None:
    from ray import serve

    from .serving import ROUTER, ROUTER_APP

    if ROUTER_APP not in serve.status().applications:
        serve.run(ROUTER.bind(), name=ROUTER_APP, route_prefix="/")


def _start(
    record: VersionRecord, store: Store, ready_timeout_s: float, blobs: dict[str, bytes]
) -> str | None:
    """Run the version's applications; None once all are running, else the reason."""
    from ray import serve

    from .serving import ENDPOINT, ReplicaSpec, app_name, remember_store, route_prefix

    remember_store(store.location)

    targets = []
    for endpoint in record.endpoints:
        shas = [
            record.code_archive,
            *(f.sha256 for f in record.files if f.endpoint == endpoint.name),
        ]
        prefix = route_prefix(record.deployment, record.version, endpoint.name)
        name = app_name(record.deployment, record.version, endpoint.name)
        spec = ReplicaSpec(
            endpoint=endpoint,
            store_location=store.location,
            code_archive=record.code_archive,
            files=tuple((f.path, f.sha256) for f in record.files if f.endpoint == endpoint.name),
            runtime=record.runtime,
            prefix=prefix,
            ready_timeout_s=ready_timeout_s,
            run_id=_run_id(record, endpoint),
            blobs=tuple((sha, blobs[sha]) for sha in dict.fromkeys(shas) if sha in blobs),
        )
        options = {"num_cpus": endpoint.cpu if endpoint.cpu is not None else 0.5}
        if endpoint.gpus:
            options["num_gpus"] = endpoint.gpus
        if endpoint.memory_mb:
            options["memory"] = endpoint.memory_mb * 1024 * 1024
        app = ENDPOINT.options(num_replicas=record.replicas, ray_actor_options=options)
        targets.append(serve.RunTarget(app.bind(spec), name=name, route_prefix=prefix))
    serve.run_many(
        targets, wait_for_ingress_deployment_creation=False, wait_for_applications_running=False
    )
    reason = _wait_running([t.name for t in targets], ready_timeout_s + 60)
    if reason is not None:
        for target in targets:
            serve.delete(target.name)
    return reason


def _run_id(record: VersionRecord, endpoint: Endpoint) -> str:
    """The execution id a runtime knows an endpoint's server by (its leftovers too)."""
    return f"endpoint-{record.version_id}-{endpoint.name}"


def _wait_running(names: list[str], timeout_s: float) -> str | None:
    from ray import serve
    from ray.serve.schema import ApplicationStatus

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        apps = serve.status().applications
        states = [apps.get(name) for name in names]
        for state in states:
            if state is not None and state.status == ApplicationStatus.DEPLOY_FAILED:
                # the replica's own error is in its deployment's message, not the app's
                details = [d.message for d in state.deployments.values() if d.message]
                return _reason("\n\n".join([*details, state.message]))
        if all(s is not None and s.status == ApplicationStatus.RUNNING for s in states):
            return None
        time.sleep(_POLL_S)
    return f"the endpoints were not ready within {timeout_s:g} s"


def _reason(message: str) -> str:
    """The replica's own words (an EndpointStartError) out of Serve's traceback."""
    found = re.search(r"EndpointStartError: (.*?)(?:\n\n|\Z)", message, re.S)
    if found:
        return found.group(1).strip()
    lines = [line for line in message.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "the endpoint failed to start"


def publish_routes(store: Store, deployment: str) -> None:
    """Tell the router what one deployment's aliases and stopped versions are."""
    from ray import serve

    from .serving import ROUTER_APP, app_name, read_routes, write_routes

    records = {r.version: r for r in _records(store, deployment)}
    table: dict[str, dict[str, str]] = {}
    for record in records.values():
        if record.status is not VersionStatus.READY:
            for endpoint in record.endpoints:
                table[f"{record.version}/{endpoint.name}"] = {
                    "gone": f"version {record.version} of {deployment!r} is {record.status.value}"
                }
    for alias, version in store.deployments.aliases(deployment).items():
        target = records.get(version)
        for endpoint in target.endpoints if target else ():
            assert target is not None
            key = f"{alias}/{endpoint.name}"
            if target.status is VersionStatus.READY:
                table[key] = {"app": app_name(deployment, version, endpoint.name)}
            else:
                table[key] = {
                    "gone": f"alias {alias!r} points to {version}, which is {target.status.value}"
                }
    routes = read_routes()
    routes[deployment] = table
    write_routes(routes)
    serve.get_app_handle(ROUTER_APP).reload.remote().result()


def set_alias(
    store: Store, deployment: str, alias: str, version: str, *, address: str | None = None
) -> VersionRecord:
    """Point ``alias`` at a ready ``version`` (a table swap in the router: nothing dropped)."""
    check_name("alias", alias)
    record = get_version(store, deployment, version)
    if record.status is not VersionStatus.READY:
        raise SweeperError(
            f"version {version} of {deployment!r} is {record.status.value}, not ready: "
            f"an alias only points to a ready version"
        )
    join(find_place(address))
    aliases = {**store.deployments.aliases(deployment), alias: version}
    store.deployments.set_aliases(deployment, aliases)
    publish_routes(store, deployment)
    return record


def stop(
    store: Store, deployment: str, version: str | None = None, *, address: str | None = None
) -> list[VersionRecord]:
    """Stop one version (or every live one) of a deployment; the records stopped."""
    chosen = [get_version(store, deployment, version)] if version else _records(store, deployment)
    if not chosen:
        raise SweeperError(f"no deployment {deployment!r}")
    join(find_place(address))  # first: Ray is imported after the place's auth is set
    from ray import serve

    from sweeper.runtime import get_runtime

    from .serving import app_name

    stopped = []
    for record in chosen:
        if record.status is VersionStatus.STOPPED:
            continue
        runtime = get_runtime(record.runtime)
        for endpoint in record.endpoints:
            if record.status is VersionStatus.READY:
                _keep_log(store, record, endpoint.name)
            serve.delete(app_name(deployment, record.version, endpoint.name))
            # what a replica killed with kill -9 left running (a container)
            runtime.remove_leftovers(_run_id(record, endpoint))
        final = record.moved(VersionStatus.STOPPED)
        store.deployments.put(deployment, record.version, final.to_dict())
        stopped.append(final)
    publish_routes(store, deployment)
    return stopped


#: Seconds a stop waits for a replica to hand over its log before it stops it anyway.
_LOG_WAIT_S = 30.0


def _live_log(deployment: str, version: str, endpoint: str) -> str:
    """One replica's log of a running endpoint (the caller has joined the place)."""
    from ray import serve

    from .serving import app_name

    handle = serve.get_app_handle(app_name(deployment, version, endpoint))
    return str(handle.logs.remote().result(timeout_s=_LOG_WAIT_S))


def _keep_log(store: Store, record: VersionRecord, endpoint: str) -> None:
    """Put a stopping endpoint's log in the store, so ``logs`` shows it afterwards.

    A replica that cannot answer (gone, wedged) must not keep the version from stopping:
    its log is then lost, and the stopped version's ``logs`` says so.
    """
    try:
        text = _live_log(record.deployment, record.version, endpoint)
    except Exception:  # noqa: BLE001 - any failure to reach the replica: stop regardless
        return
    store.deployments.put_log(record.deployment, record.version, endpoint, text)


def logs(
    store: Store, deployment: str, version: str, endpoint: str, *, address: str | None = None
) -> str:
    """The log of a version's endpoint: one replica's (the server's output and the handler's
    tracebacks) while it runs, the one kept when it stopped, or the failure reason of one
    that did not start."""
    record = get_version(store, deployment, version)
    if endpoint not in {e.name for e in record.endpoints}:
        raise SweeperError(f"version {version} of {deployment!r} has no endpoint {endpoint!r}")
    if record.status is VersionStatus.READY:
        join(find_place(address))  # first: Ray is imported after the place's auth is set
        return _live_log(deployment, version, endpoint)
    kept = store.deployments.log(deployment, version, endpoint)
    if kept is not None:
        return kept
    state = f"version {version} is {record.status.value}"
    if record.reason:
        return f"{state}: {record.reason}\n"
    return f"{state}; no log was kept (it was not running when it stopped)\n"


__all__ = ["deploy", "get_version", "logs", "publish_routes", "set_alias", "stop", "versions"]
