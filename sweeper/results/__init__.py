"""The notebook API over a sweeper store::

import sweeper.results
results = sweeper.results.open(".sweeper")
results.executions(sweep_id=...)      # pandas.DataFrame
results.best(sweep_id, k=5)
results.lineage("datum://<sha256>").to_dict()
results.replay(sweep_id, pruner="median").to_dict()
"""

from ._lineage import Lineage, LineageEdge, LineageNode
from ._results import Results, open
from .replay import Replay, ReplayTrial

__all__ = ["Lineage", "LineageEdge", "LineageNode", "Replay", "ReplayTrial", "Results", "open"]
