"""Deployments: ``sweep deploy``, ``sweep deployments``, ``sweep deployment alias|stop|logs``,
and ``sweep up`` / ``sweep down`` (a local Ray for them that outlives the command).

\b
sweep up                                          # a local Ray + Serve, say where
sweep deploy predict --deployment staging --file predict.model=best:SWEEP_ID:model.pkl
sweep deployment alias staging production v1
curl http://127.0.0.1:8640/staging/production/predict/
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from sweeper.cli import output
from sweeper.cli.options import DEFAULT_RUNTIME, RUNTIMES, config_option, json_option, store_option
from sweeper.errors import SweeperError

if TYPE_CHECKING:
    from sweeper.api.deploy import Deployments
    from sweeper.config.endpoint import DeploymentBlock
    from sweeper.deploy import VersionRecord

_ADDRESS = click.option(
    "--address", help="The Ray cluster (default: RAY_ADDRESS, else the head of `sweep up`)."
)


def _echo(text: str) -> None:
    click.echo(f"sweep: {text}", err=True)


def _urls(record: VersionRecord, aliases: dict[str, str]) -> dict[str, Any]:
    names = [a for a, v in sorted(aliases.items()) if v == record.version]
    return {"version": record.urls(), **{f"alias:{a}": record.urls(a) for a in names}}


def _as_json(record: VersionRecord, aliases: dict[str, str]) -> dict[str, Any]:
    return {
        **record.to_dict(),
        "aliases": sorted(a for a, v in aliases.items() if v == record.version),
        "urls": _urls(record, aliases),
    }


@click.command("deploy")
@click.argument("endpoints", nargs=-1, required=True)
@click.option("--deployment", required=True, help="The deployment the new version belongs to.")
@click.option(
    "--file",
    "files",
    multiple=True,
    metavar="ENDPOINT.FILE=SOURCE",
    help="An endpoint file: EXEC_ID:OUTPUT, datum://SHA256, best:SWEEP_ID:OUTPUT or a path.",
)
@click.option(
    "--alias", "aliases", multiple=True, help="Point this alias at the version once ready."
)
@click.option(
    "--replicas",
    type=click.IntRange(min=1),
    default=None,
    help="Replicas of each endpoint (default: the deployment block's defaults.replicas, else 1).",
)
@click.option(
    "--runtime",
    type=RUNTIMES,
    default=None,
    help="How an endpoint runs: a local process, or in its image (default: the deployment "
    f"block's defaults.runtime, else {DEFAULT_RUNTIME}).",
)
@_ADDRESS
@click.option(
    "--ready-timeout",
    type=float,
    default=120.0,
    show_default=True,
    help="Seconds a replica may take to become ready.",
)
@config_option
@store_option
@json_option("Print the version record, with its urls, as JSON.")
def deploy(
    endpoints: tuple[str, ...],
    deployment: str,
    files: tuple[str, ...],
    aliases: tuple[str, ...],
    replicas: int | None,
    runtime: str | None,
    address: str | None,
    ready_timeout: float,
    config_path: str | None,
    store: str | None,
    as_json: bool,
) -> None:
    """Deploy ENDPOINT... of valohai.yaml as a new version of a deployment on Ray Serve.

    Waits until the version is ready (or failed) and prints its URLs; exits 1 when it failed.
    A valohai.yaml ``deployment`` block of that name gives the defaults of --replicas and
    --runtime.
    """
    from sweeper.api import deploy as api
    from sweeper.deploy.place import find_place

    block = api.declared(deployment, config=config_path)
    if block is not None:
        _echo(f"deployment {deployment!r} is declared in valohai.yaml: {_describe(block)}")
    runtime = runtime or (block and block.runtime) or DEFAULT_RUNTIME
    _echo(f"deploying on {find_place(address).describe()}")
    record = api.deploy(
        endpoints,
        deployment=deployment,
        files=_file_mapping(files),
        aliases=aliases,
        replicas=replicas,
        runtime=runtime,
        address=address,
        config=config_path,
        store=store,
        ready_timeout_s=ready_timeout,
    )
    _print_version(record, _api(config_path, store).aliases(deployment), as_json)
    if record.reason:
        raise SystemExit(1)


def _describe(block: DeploymentBlock) -> str:
    """The defaults a deployment block gives, in words."""
    given = [f"{k} {v}" for k, v in (("replicas", block.replicas), ("runtime", block.runtime)) if v]
    target = f"; its target {block.target!r} is Valohai's (sweeper serves on Ray)"
    return (", ".join(given) or "no defaults sweeper reads") + (target if block.target else "")


def _file_mapping(files: tuple[str, ...]) -> dict[str, str]:
    mapping = {}
    for item in files:
        target, sep, source = item.partition("=")
        if not sep:
            raise SweeperError(f"--file {item!r} must look like ENDPOINT.FILE=SOURCE")
        mapping[target] = source
    return mapping


def _print_version(record: VersionRecord, known: dict[str, str], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(_as_json(record, known), default=str))
        return
    reason = f": {record.reason}" if record.reason else ""
    _echo(f"{record.deployment} {record.version}: {record.status.value}{reason}")
    for group in _urls(record, known).values():
        for url in group.values():
            click.echo(url)


def _api(config_path: str | None, store: str | None, address: str | None = None) -> Deployments:
    from sweeper.api.deploy import Deployments

    return Deployments(config=config_path, store=store, address=address)


@click.command("deployments")
@click.argument("name", required=False)
@config_option
@store_option
@json_option("Print the versions (with aliases and urls) as JSON.")
def deployments(
    name: str | None, config_path: str | None, store: str | None, as_json: bool
) -> None:
    """List deployments: versions, their status, aliases and URLs."""
    api = _api(config_path, store)
    records = api.versions(name)
    aliases = {d: api.aliases(d) for d in {r.deployment for r in records}}
    if as_json:
        click.echo(json.dumps([_as_json(r, aliases[r.deployment]) for r in records], default=str))
        return
    rows = [
        [
            r.deployment,
            r.version,
            r.status.value,
            ",".join(_as_json(r, aliases[r.deployment])["aliases"]),
            " ".join(r.urls().values()) if r.status.value == "ready" else (r.reason or ""),
        ]
        for r in records
    ]
    output.table(["deployment", "version", "status", "aliases", "urls / reason"], rows)


@click.group("deployment")
def deployment_group() -> None:
    """Move an alias, stop versions, read an endpoint's log."""


@deployment_group.command("alias")
@click.argument("name")
@click.argument("alias")
@click.argument("version")
@_ADDRESS
@config_option
@store_option
def alias(
    name: str,
    alias: str,
    version: str,
    address: str | None,
    config_path: str | None,
    store: str | None,
) -> None:
    """Point ALIAS of deployment NAME at VERSION (a ready one); nothing is dropped."""
    record = _api(config_path, store, address).set_alias(name, alias, version)
    for url in record.urls(alias).values():
        click.echo(url)


@deployment_group.command("stop")
@click.argument("name")
@click.argument("version", required=False)
@_ADDRESS
@config_option
@store_option
def stop(
    name: str, version: str | None, address: str | None, config_path: str | None, store: str | None
) -> None:
    """Stop VERSION of deployment NAME (every live version without VERSION)."""
    for record in _api(config_path, store, address).stop(name, version):
        _echo(f"{name} {record.version}: stopped")


@deployment_group.command("logs")
@click.argument("name")
@click.argument("version")
@click.argument("endpoint")
@_ADDRESS
@config_option
@store_option
def logs(
    name: str,
    version: str,
    endpoint: str,
    address: str | None,
    config_path: str | None,
    store: str | None,
) -> None:
    """Print the log of ENDPOINT of VERSION of deployment NAME."""
    click.echo(_api(config_path, store, address).logs(name, version, endpoint), nl=False)


def _idle_seconds(text: str) -> float | None:
    """``--idle``: a duration such as ``30m`` or ``1h 30m``; ``never`` (or ``0``): no limit."""
    from sweeper.config.duration import parse_duration

    if text.strip().lower() in ("never", "0", "off"):
        return None
    try:
        return float(parse_duration(text))
    except ValueError as exc:
        raise SweeperError(f"--idle {exc}") from None


def _since(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def _print_status() -> None:
    """``sweep up --status``: whether a head is up, where, since when, idle for how long."""
    import time

    from sweeper.cluster import head as heads

    head, note = heads.find()
    if head is None:
        _echo(note or "no head of `sweep up` is running")
        raise SystemExit(1)
    now = time.time()
    stops = "never stops by itself"
    if head.idle_s is not None:
        stops = f"stops after {_since(head.idle_s)} unused"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(head.started_at))
    click.echo(
        f"up at {head.address} (endpoints http://127.0.0.1:{head.http_port}), pid {head.pid}, "
        f"since {started} ({_since(now - head.started_at)}), idle for "
        f"{_since(head.idle_for(now))}, {stops}"
    )


@click.command("up")
@click.option(
    "--port", "gcs_port", type=int, default=None, help="The Ray head's GCS port (default 6390)."
)
@click.option(
    "--http-port",
    type=int,
    default=None,
    help="Serve's HTTP port (default 8640, or SWEEPER_SERVE_PORT).",
)
@click.option("--num-cpus", type=int, default=None, help="CPUs the head offers (default: all).")
@click.option(
    "--idle",
    default="30m",
    show_default=True,
    help="Stop after this long with no command connected and no deployment (`never`: keep).",
)
@click.option("--status", is_flag=True, help="Say whether a head is up, where, idle how long.")
def up(
    gcs_port: int | None, http_port: int | None, num_cpus: int | None, idle: str, status: bool
) -> None:
    """Start a warm local Ray (with Serve) that the commands join; --status: is one up.

    Sweeps, runs, pipelines and deployments without --address join it instead of starting
    a Ray of their own. It stops itself after --idle with no command connected and no
    deployment served; `sweep down` stops it now.
    """
    from sweeper.deploy import place

    if status:
        _print_status()
        return
    found, started = place.up(
        gcs_port=gcs_port or place.DEFAULT_GCS_PORT,
        http_port=http_port or place.find_http_port(),
        num_cpus=num_cpus,
        idle_s=_idle_seconds(idle),
    )
    _echo(
        ("started " if started else "already up: ") + found.describe() + "; `sweep down` stops it"
    )


@click.command("down")
def down() -> None:
    """Stop the local Ray head `sweep up` started (and every deployment on it).

    Each version it serves is recorded stopped, its endpoint logs kept in its store (as
    `sweep deployment stop` keeps them) when its replicas hand them over within seconds.
    """
    from sweeper.deploy import retire

    was_up, notes = retire.down()
    for note in notes:
        _echo(note)
    _echo("stopped the head of `sweep up`" if was_up else "no head of `sweep up` is running")


#: The commands of this module (tests/cli/test_cli_imports.py checks them against main's table).
COMMANDS = [deploy, deployments, deployment_group, up, down]
