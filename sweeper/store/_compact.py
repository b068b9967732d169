"""Merge a dataset's parts into one without changing what readers see.

1. read every part (damaged parts are left alone);
2. publish one merged part whose metadata lists every part it replaces: the merged ones,
   plus leftovers of an earlier compaction that was interrupted before its deletes;
3. delete the replaced parts.

A reader that lists before step 2 reads the old parts (or finds one gone and lists again);
one that lists after step 2 drops the replaced parts. Either way each row is seen once.
The merged part is named after the newest part it merges, so rows keep their order.

Compactions of one dataset are serialised by a lock on local stores; on an object store,
run one compaction per dataset at a time (two concurrent ones would publish the same rows
twice).
"""

from __future__ import annotations

from collections.abc import Callable

from ._backend import Backend
from ._locks import store_lock
from ._parts import Parts, new_part_name, part_time
from ._schema import schema_for
from ._unify import concat


def compact_dataset(
    backend: Backend, dataset: str, *, before_delete: Callable[[], None] | None = None
) -> int:
    """Merge the dataset's live parts into one; the number of part files removed.

    ``before_delete`` runs between publishing the merged part and deleting the old ones
    (tests use it to stand in for a crash or a concurrent reader).
    """
    parts = Parts(backend, dataset)
    with store_lock(backend, f"locks/compact-{dataset}.lock"):
        snapshot = parts.read(report=False)
        existing = {p.name for p in snapshot.parts if not p.gone}
        live = snapshot.live
        leftovers = sorted(n for n in snapshot.replaced if n in existing)
        if len(live) < 2:
            for name in leftovers:
                backend.delete(parts.rel(name))
            return len(leftovers)
        merged = concat([p.table for p in live if p.table is not None], schema_for(dataset))
        merged_names = [p.name for p in live]
        name = new_part_name(part_time(merged_names[-1]))
        parts.write(merged, name=name, replaces=merged_names + leftovers)
        if before_delete is not None:
            before_delete()
        for old in merged_names + leftovers:
            backend.delete(parts.rel(old))
        return len(merged_names) + len(leftovers)
