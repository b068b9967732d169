"""Where deployments live: a Ray that outlives the command, never the embedded one.

In order: ``--address``, ``RAY_ADDRESS``, else the head ``sweep up`` started on this
machine (its address and Serve port in ``$SWEEPER_HOME/head.json``, default ``~/.sweeper``).
``sweep up`` runs ``ray start --head --block`` in a process group of its own (see
:mod:`sweeper.cluster.head`, which also stops it once unused), so ``sweep down`` stops that
head and nothing else (not another Ray of the same user). The Serve HTTP
port defaults to 8640: not 8000, which Valohai gives a ``server-command`` endpoint by
default and a local server would want. A stale address fails within seconds
(``cluster.connect`` probes it first).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from sweeper.cluster import head as heads
from sweeper.cluster.connect import LOCAL, connect, say_notes
from sweeper.cluster.head import DEFAULT_GCS_PORT, Head, home
from sweeper.errors import ClusterError

#: Serve's HTTP port unless ``--http-port`` or ``SWEEPER_SERVE_PORT`` says otherwise.
DEFAULT_HTTP_PORT = 8640


@dataclass(frozen=True)
class Place:
    """The Ray deployments run on, and the HTTP address Serve answers at."""

    address: str
    http_host: str
    http_port: int
    #: How the address was chosen, said on screen: ``--address``, ``RAY_ADDRESS``, ``sweep up``.
    source: str
    #: The auth token of the head ``sweep up`` started (a 2.60 ``ray start`` head needs one).
    token: str | None = None

    @property
    def base_url(self) -> str:
        """``http://host:port`` of Serve's proxy."""
        return f"http://{self.http_host}:{self.http_port}"

    def describe(self) -> str:
        """One line for the screen."""
        return f"Ray at {self.address} ({self.source}), endpoints at {self.base_url}"


def _read_head() -> Head | None:
    """The live head of ``sweep up`` (a stale head.json counts as none)."""
    return heads.find()[0]


def find_http_port() -> int:
    """Serve's HTTP port: ``SWEEPER_SERVE_PORT``, else :data:`DEFAULT_HTTP_PORT`."""
    return int(os.environ.get("SWEEPER_SERVE_PORT") or DEFAULT_HTTP_PORT)


def find_place(address: str | None) -> Place:
    """The place for ``address`` (``--address``), ``RAY_ADDRESS`` or ``sweep up``'s head."""
    if address == LOCAL:
        raise ClusterError(
            "deployments need a Ray that outlives the command, not an embedded one: "
            "run `sweep up`, or pass --address of a running cluster"
        )
    head = _read_head()
    if address or os.environ.get("RAY_ADDRESS"):
        source = "--address" if address else "RAY_ADDRESS"
        chosen = str(address or os.environ["RAY_ADDRESS"])
        same = head is not None and head.address == chosen
        port = head.http_port if same and head else find_http_port()
        host = chosen.rpartition(":")[0] if ":" in chosen and "://" not in chosen else "127.0.0.1"
        return Place(chosen, host or "127.0.0.1", port, source)
    if head is None:
        raise ClusterError(
            "no Ray for deployments: run `sweep up` to start a local one that outlives the "
            "command, or pass --address (or set RAY_ADDRESS) of a running cluster"
        )
    return _head_place(head)


def _head_place(head: Head) -> Place:
    return Place(head.address, "127.0.0.1", head.http_port, "sweep up", token=head.token or None)


def join(place: Place) -> None:
    """Connect to the place's Ray and make sure Serve runs with its HTTP port."""
    if place.token and not os.environ.get("RAY_AUTH_TOKEN"):
        # before Ray is imported: it reads its auth mode once, at import
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = place.token
    from ray import serve

    connect(place.address)
    say_notes()
    # Serve's own INFO lines ("Connecting to existing Serve app ...") are its log, not the
    # user's screen: sweeper says what it does itself; warnings and errors still show
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    # HeadOnly: the URLs sweeper prints are the head's; a proxy on every node would also
    # bind the port on nodes that share a host (and serve nothing anyone was told of)
    serve.start(
        proxy_location="HeadOnly",
        http_options={"host": "0.0.0.0", "port": place.http_port},
        logging_config={"enable_access_log": False},  # see serving.QUIET
    )


def up(
    *, gcs_port: int, http_port: int, num_cpus: int | None, idle_s: float | None
) -> tuple[Place, bool]:
    """Start (or find) the local head; (its place, whether it was started now)."""
    head = _read_head()
    if head is not None:
        return _head_place(head), False
    head = heads.start(gcs_port=gcs_port, http_port=http_port, num_cpus=num_cpus, idle_s=idle_s)
    place = _head_place(head)
    join(place)
    heads.started(head)
    return place, True


def live_head() -> Place | None:
    """The place of the live head ``sweep up`` started; None without one (or a stale one)."""
    head = _read_head()
    return _head_place(head) if head is not None else None


def down() -> bool:
    """Stop the head ``sweep up`` started; False when there was none."""
    head = heads.read()
    if head is None:
        return False
    if head.stale_reason() is None:
        # Serve first: its replicas end their servers and containers (a killed head's
        # replicas could not, and their containers would outlive it)
        join(_head_place(head))
        from ray import serve

        serve.shutdown()
    if head.keeper_alive():  # a pid reused since is another program's group: left alone
        heads.stop_group(head.pid)
    heads.head_file().unlink(missing_ok=True)
    return True


__all__ = [
    "DEFAULT_GCS_PORT",
    "DEFAULT_HTTP_PORT",
    "Place",
    "down",
    "find_http_port",
    "find_place",
    "home",
    "join",
    "live_head",
    "up",
]
