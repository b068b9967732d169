"""The notebook API over a sweeper store::

import sweeper.results
results = sweeper.results.open(".sweeper")
results.executions(sweep_id=...)      # pandas.DataFrame
results.best(sweep_id, k=5)
results.lineage("datum://<sha256>").to_dict()
results.replay(sweep_id, pruner="median").to_dict()
results.failures(sweep_id)            # why trials failed, most common reason first
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sweeper._lazy import lazy_attributes

from ._lineage import Lineage, LineageEdge, LineageNode
from ._results import Results, open

if TYPE_CHECKING:
    from .replay import Replay, ReplayTrial

__all__ = ["Lineage", "LineageEdge", "LineageNode", "Replay", "ReplayTrial", "Results", "open"]


# The replay imports Optuna and pandas: loaded on first use, so `sweep ls` reads without them.
__getattr__ = lazy_attributes(
    __name__, {"Replay": "sweeper.results.replay", "ReplayTrial": "sweeper.results.replay"}
)
