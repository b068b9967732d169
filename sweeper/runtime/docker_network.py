"""Network namespaces that one runner's containers take turns in, so that they start faster.

Creating a container's network namespace and its veth pair on the bridge, and tearing them
down at its exit, is the largest part of the daemon's work for a short container (about
0.25 s of a 0.4 s start on 2 busy CPUs). A step's container started with
``network_mode="container:<holder>"`` joins a namespace that exists already: it has the same
default bridge network (the holder's address, hostname and DNS), without that work.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import docker.errors
import requests.exceptions

#: The label of every holder; its value is unique to the :class:`NetworkHolders` that made it.
HOLDER_LABEL = "sweeper.network-holder"
#: The holder's only process: it waits for the end of its stdin.
HOLDER_COMMAND = ["/bin/sh", "-c", "while read -r _; do :; done"]

#: A holder still "created" (never started) this long after its creation was left by a
#: process killed between the two: the next pool to start one removes it.
STALE_CREATED_S = 60.0

_DOCKER_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)


class NetworkHolder:
    """One running holder container and the attach socket that keeps it alive."""

    def __init__(self, container: Any, stdin: Any) -> None:
        self.container = container
        self._stdin = stdin

    @property
    def network_mode(self) -> str:
        """The ``network_mode`` of a container that joins this holder's network."""
        return f"container:{self.container.id}"

    def alive(self) -> bool:
        """Whether the holder still runs (one removed from outside cannot be joined)."""
        try:
            self.container.reload()
        except _DOCKER_ERRORS:
            return False
        return bool(self.container.attrs.get("State", {}).get("Running"))

    def close(self) -> None:
        """End the holder: its stdin closes, its shell exits, the daemon removes it."""
        try:
            self._stdin.close()
        except Exception:  # noqa: BLE001 - closing a dead socket may fail any way
            pass


class NetworkHolders:
    """Holder containers for one runtime, one per run in flight (never shared at once).

    Consecutive runs take turns in one namespace: a step sees the address and hostname the
    previous one saw, and a port it binds may still have the previous step's connections in
    TIME_WAIT (bind with ``SO_REUSEADDR``, as most servers do).

    A holder ends with the process that made it, however that ends: its shell reads its
    stdin until the end, the daemon closes that stdin (``StdinOnce``) when our attach socket
    closes, which the kernel does when the process dies, even by ``kill -9``; the daemon
    then removes the holder (``auto_remove``). One killed in the instant between creating a
    holder and starting it leaves it created, never started: the next pool removes it.
    """

    def __init__(self) -> None:
        #: This pool's value of :data:`HOLDER_LABEL`.
        self.label = uuid.uuid4().hex
        self._free: list[NetworkHolder] = []
        self._lock = threading.Lock()
        self._swept = False

    def take(self, client: Any, image_id: str) -> NetworkHolder | None:
        """A free holder, else a new one of ``image_id``; None if none can be started (the
        run then gets a network of its own, as Docker gives by default)."""
        with self._lock:
            if self._free:
                return self._free.pop()
        try:
            return self._start(client, image_id)
        except _DOCKER_ERRORS:
            return None

    def give_back(self, holder: NetworkHolder) -> None:
        """Make ``holder`` free for the next run."""
        with self._lock:
            self._free.append(holder)

    def _start(self, client: Any, image_id: str) -> NetworkHolder:
        if not self._swept:
            self._swept = True
            _remove_stale(client)
        container = client.containers.create(
            image_id,
            HOLDER_COMMAND,
            # not detached, with stdin open: the daemon sets StdinOnce
            detach=False,
            stdin_open=True,
            auto_remove=True,
            labels={HOLDER_LABEL: self.label},
            security_opt=["no-new-privileges"],
        )
        try:
            stdin = container.attach_socket(params={"stdin": 1, "stream": 1})
            container.start()
        except BaseException:
            try:
                container.remove(force=True)
            except _DOCKER_ERRORS:
                pass
            raise
        return NetworkHolder(container, stdin)


def _remove_stale(client: Any) -> None:
    """Remove the holders (any pool's) created long ago and never started."""
    try:
        found = client.containers.list(
            all=True, filters={"label": HOLDER_LABEL, "status": "created"}, sparse=True
        )
        for container in found:
            if time.time() - float(container.attrs.get("Created", time.time())) > STALE_CREATED_S:
                container.remove(force=True)
    except _DOCKER_ERRORS:
        pass  # best effort: the next pool tries again
