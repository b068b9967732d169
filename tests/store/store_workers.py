"""Records and worker processes for the store tests (importable by spawned processes)."""

from __future__ import annotations

import sys
import uuid
from typing import Any

from sweeper.store import Store


def make_record(number: int, **overrides: Any) -> dict[str, Any]:
    """An execution record shaped like the execution layer's."""
    record: dict[str, Any] = {
        "id": f"01J{uuid.uuid4().hex[:20].upper()}",
        "counter": number,
        "step": "train-model",
        "status": "complete",
        "exit_code": 0,
        "error": None,
        "command": ["python train.py --lr=0.1"],
        "image": "python:3.11",
        "image_digest": None,
        "code_version": "sha256:abc",
        "parameters": {"lr": 0.1, "epochs": 5, "act": "relu", "flag": True},
        "metrics": {"loss": 0.4, "accuracy": 0.9},
        "inputs": [],
        "outputs": [],
        "created_at": f"2026-11-26T07:00:{number % 60:02d}.123456+00:00",
        "started_at": "2026-11-26T07:00:00+00:00",
        "ended_at": "2026-11-26T07:01:00Z",
        "duration_s": 1.5,
        "runtime": "local",
        "reused_from": None,
        "sweep_id": None,
        "trial_number": None,
        "pipeline_run_id": None,
        "node": None,
        "ray_node": None,
        "gpu_ids": [],
        "attempt": 1,
        "spec_hash": f"spec-{number}",
        "environment": {"SECRET": "***"},
        "resources": {"cpus": 1},
        "spec": {"step": "train-model"},
    }
    record.update(overrides)
    return record


def events(count: int) -> list[dict[str, Any]]:
    """``count`` metric events with two keys each."""
    return [
        {"seq": i, "time": "2026-11-26T07:00:01Z", "values": {"epoch": i, "loss": 1.0 / (i + 1)}}
        for i in range(count)
    ]


def write_executions(location: str, count: int) -> list[tuple[str, int]]:
    """Append ``count`` executions, each with a counter from the store; (id, counter) pairs."""
    return write_executions_to(Store.open(location), count)


def write_executions_to(store: Store, count: int) -> list[tuple[str, int]]:
    """:func:`write_executions` with a store already open (rows buffered, say)."""
    written = []
    for _ in range(count):
        number = store.allocate_counter()
        record = make_record(number)
        store.write_execution(record, events(3))
        written.append((record["id"], number))
    return written


def allocate(location: str, count: int) -> list[int]:
    """Allocate ``count`` counter values."""
    store = Store.open(location)
    return [store.allocate_counter() for _ in range(count)]


def write_forever(location: str) -> None:
    """Append executions until killed (for the kill -9 test)."""
    store = Store.open(location)
    number = 0
    while True:
        number += 1
        store.write_execution(make_record(number), events(50))


def number_forever(location: str) -> None:
    """Take a number and record an execution with it, until killed."""
    store = Store.open(location)
    while True:
        store.write_execution(make_record(store.allocate_counter()), events(2))


def hang_before_rename(location: str, ready: str) -> None:
    """Start writing one execution row and stop just before the part is published."""
    import os
    import pathlib
    import time

    store = Store.open(location)
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        if "datasets/executions" in str(dst):
            pathlib.Path(ready).write_text(str(src))
            time.sleep(60)
        real_replace(src, dst)

    os.replace = replace  # type: ignore[assignment]
    store.write_execution(make_record(1), events(2))


if __name__ == "__main__":
    if sys.argv[1] == "forever":
        write_forever(sys.argv[2])
    elif sys.argv[1] == "numbered":
        number_forever(sys.argv[2])
    elif sys.argv[1] == "hang":
        hang_before_rename(sys.argv[2], sys.argv[3])
