"""Execution records for the results tests."""

from __future__ import annotations

from typing import Any


def record(execution_id: str, counter: int, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": execution_id,
        "counter": counter,
        "step": "train",
        "status": "complete",
        "exit_code": 0,
        "error": None,
        "command": ["python train.py"],
        "image": "python:3.11",
        "code_version": "sha256:abc",
        "parameters": {},
        "metrics": {},
        "inputs": [],
        "outputs": [],
        "created_at": f"2026-11-26T07:{counter:02d}:00+00:00",
        "runtime": "local",
        "sweep_id": None,
        "trial_number": None,
        "gpu_ids": [],
        "attempt": 1,
        "spec_hash": f"h{counter}",
    }
    base.update(overrides)
    return base
