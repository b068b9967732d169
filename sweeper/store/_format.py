"""The store's marker and the facts about its datasets that need no Arrow schema.

Apart from :mod:`sweeper.store._schema` so that opening a store (an execution actor does it
before its first step) does not import pyarrow. Bump :data:`SCHEMA_VERSION` as
:mod:`~sweeper.store._schema` says.
"""

from __future__ import annotations

FORMAT = "sweeper-store"
SCHEMA_VERSION = 1
MARKER = "sweeper-store.json"

ID_COLUMNS = {"sweeps": "sweep_id", "pipeline_runs": "pipeline_run_id"}
"""Datasets that log a row per status change; readers keep the latest row per id."""
