"""Ray at the edge: connecting to a cluster and the actor that runs executions.

The actor's names are imported on first use: ``sweeper.cluster.connect`` (what starts Ray)
must not wait for the actor's imports (the store, pyarrow, the executor).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sweeper.cluster.connect import ClusterInfo, connect, shutdown

if TYPE_CHECKING:
    from sweeper.cluster.actors import ActorPool, ExecutionActor, TrialHandle

__all__ = ["ActorPool", "ClusterInfo", "ExecutionActor", "TrialHandle", "connect", "shutdown"]


def __getattr__(name: str) -> Any:
    if name in ("ActorPool", "ExecutionActor", "TrialHandle"):
        return getattr(importlib.import_module("sweeper.cluster.actors"), name)
    raise AttributeError(f"module 'sweeper.cluster' has no attribute {name!r}")
