"""``sweep down``: the versions the head serves are stopped with it, as ``sweep deployment
stop`` stops them.

Before the head goes, each ready version it serves gets its endpoint logs kept in its store
(``Store.deployments.put_log``) and is recorded ``stopped``, so ``sweep deployments`` does not
show it ``ready`` once nothing answers, and ``sweep deployment logs`` still reads its log.
The stores are those the head's versions were deployed from (listed in the GCS by
:func:`sweeper.deploy.serving.remember_store`). ``down`` must not hang on what it cannot
reach: the logs get :data:`LOG_WAIT_S` seconds in all (a replica that does not answer in
time loses its log, its version is stopped regardless), and a store that cannot be opened
is skipped with a note (its versions keep the status they had).
"""

from __future__ import annotations

import time

from sweeper.errors import SweeperError
from sweeper.store import Store

from . import place
from .model import VersionRecord, VersionStatus
from .service import versions

#: Seconds ``sweep down`` waits, all versions together, for replicas to hand over their logs.
LOG_WAIT_S = 15.0
#: Seconds each replica gets at least, so one slow answer does not lose every later log.
_MIN_WAIT_S = 1.0


def down() -> tuple[bool, list[str]]:
    """Stop the head of ``sweep up`` after keeping its versions' logs and stopping them:
    (whether there was a head, notes for the screen)."""
    head = place.live_head()
    notes = stop_served(head) if head is not None else []
    return place.down(), notes


def stop_served(head: place.Place) -> list[str]:
    """Keep the logs of every ready version ``head`` serves and record it stopped; notes
    (what was stopped, what could not be kept)."""
    place.join(head)
    from ray import serve

    from .serving import known_stores

    running = set(serve.status().applications)
    deadline = time.monotonic() + LOG_WAIT_S
    notes = []
    for location in known_stores():
        try:
            store = Store.open(location)
        except (SweeperError, OSError) as exc:
            notes.append(
                f"the store at {location} could not be opened, its versions are left as they were: {exc}"
            )
            continue
        for record in versions(store):
            if record.status is VersionStatus.READY and _served(record, running):
                notes += _stop(store, record, deadline)
    return notes


def _served(record: VersionRecord, running: set[str]) -> bool:
    from .serving import app_name

    return any(
        app_name(record.deployment, record.version, e.name) in running for e in record.endpoints
    )


def _stop(store: Store, record: VersionRecord, deadline: float) -> list[str]:
    """Keep a version's endpoint logs and record it stopped; its notes."""
    from ray import serve

    from .serving import app_name

    lost = []
    for endpoint in record.endpoints:
        handle = serve.get_app_handle(app_name(record.deployment, record.version, endpoint.name))
        wait = max(_MIN_WAIT_S, deadline - time.monotonic())
        try:
            text = str(handle.logs.remote().result(timeout_s=wait))
        except Exception:  # noqa: BLE001 - a replica gone or wedged: stop regardless
            lost.append(endpoint.name)
            continue
        store.deployments.put_log(record.deployment, record.version, endpoint.name, text)
    store.deployments.put(
        record.deployment, record.version, record.moved(VersionStatus.STOPPED).to_dict()
    )
    note = f"stopped {record.deployment} {record.version}"
    return [note + (f" (the log of {', '.join(lost)} was not kept)" if lost else ", its logs kept")]


__all__ = ["LOG_WAIT_S", "down", "stop_served"]
