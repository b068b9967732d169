"""Check that an execution reproduces: :func:`verify` runs it again and compares, field by field.

The re-run is :func:`sweeper.api.rerun`'s (the recorded code snapshot, image digest,
parameters, inputs by checksum, environment without secrets, a sweep trial's ``VH_SEED``);
its record says which execution it verifies (``verifies``), so the verdict is kept with the
two records and :func:`verifications` finds it again from the original ("verified by #57").
The comparison itself is :func:`sweeper.execution.verification.compare_records`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sweeper.api._common import Echo, OnRecord
from sweeper.api.run import rerun_spec
from sweeper.errors import SweeperError
from sweeper.project import Project, project_from
from sweeper.status import Status

if TYPE_CHECKING:
    from sweeper.execution.spec import ExecutionSpec
    from sweeper.execution.verification import Verification
    from sweeper.record import ExecutionRecord
    from sweeper.store import RecordStore


def verify(
    execution: str,
    *,
    tolerance: float = 0.0,
    config: str | os.PathLike[str] = "valohai.yaml",
    store: str | None = None,
    echo: Echo | None = None,
    on_record: OnRecord | None = None,
) -> Verification:
    """Run ``execution`` (an id, ``#counter`` or ``latest``) again as it ran and compare.

    The :class:`~sweeper.execution.verification.Verification` says whether it
    ``reproduced``: the same exit status, every metric equal (or within ``tolerance``,
    absolute or relative to the larger value) and every output of the same sha256; and what
    could not be held equal. Raises :class:`~sweeper.errors.SweeperError` when the execution
    is unknown or has not ended, or cannot be run again (its code snapshot or image is gone).
    """
    project = project_from(config, store)
    return _verify_record(project, _ended(project, execution), tolerance, echo, on_record)


def verify_sweep(
    sweep_id: str,
    *,
    sample: int,
    tolerance: float = 0.0,
    config: str | os.PathLike[str] = "valohai.yaml",
    store: str | None = None,
    echo: Echo | None = None,
    on_record: OnRecord | None = None,
) -> list[Verification]:
    """:func:`verify` ``sample`` complete trials of a sweep, spread evenly over its trials
    by number (the first and the last among them), one after another."""
    if sample < 1:
        raise SweeperError(f"--sample must be at least 1, not {sample}")
    project = project_from(config, store)
    opened = project.open_store()
    if opened.get_sweep(sweep_id) is None:
        raise SweeperError(f"no sweep {sweep_id!r} in the store at {opened.location}")
    trials = _complete_trials(opened, sweep_id)
    if not trials:
        raise SweeperError(f"sweep {sweep_id} has no complete trial to verify")
    picked = _spread(trials, sample)
    return [_verify_record(project, record, tolerance, echo, on_record) for record in picked]


def verifications(store: RecordStore, record: ExecutionRecord) -> list[Verification]:
    """The verifications of ``record`` that have ended, oldest first ("verified by #57").

    A verifying re-run is created after what it verifies and ids sort by creation time, so
    only the executions after ``record`` are read.
    """
    from sweeper.execution.verification import compare_records

    found = []
    for execution_id in store.execution_ids(since=record.id):
        rerun = store.get_record(execution_id)
        if rerun is None or not rerun.verifies or not rerun.is_final:
            continue
        if rerun.verifies.get("execution") == record.id:
            tolerance = float(rerun.verifies.get("tolerance") or 0.0)
            found.append(compare_records(record, rerun, tolerance=tolerance))
    return found


def verification_lines(store: RecordStore, record: ExecutionRecord) -> list[str]:
    """What ``sweep show`` says of an execution's verifications, and of a verifying re-run."""
    lines = []
    if record.verifies:
        original = store.get_record(str(record.verifies.get("execution")))
        if original is not None and record.is_final:
            lines.append(_line("verifies", original, _verdict(store, original, record)))
    for found in verifications(store, record):
        rerun = store.get_record(found.rerun)
        if rerun is not None:
            lines.append(_line("verified by", rerun, found))
    return lines


def _line(relation: str, other: ExecutionRecord, found: Verification) -> str:
    verdict = "reproduced" if found.reproduced else "not reproduced"
    differing = ", ".join(check.name for check in found.differing)
    return f"{relation} #{other.counter} {other.id}: {verdict}" + (
        f" ({differing} differ)" if differing else ""
    )


def _verdict(store: RecordStore, original: ExecutionRecord, rerun: ExecutionRecord) -> Verification:
    from sweeper.execution.verification import compare_records

    tolerance = float((rerun.verifies or {}).get("tolerance") or 0.0)
    return compare_records(original, rerun, tolerance=tolerance)


def _ended(project: Project, execution: str) -> ExecutionRecord:
    from sweeper.record import ExecutionRecord

    record = ExecutionRecord.from_dict(project.open_store().find_execution(execution))
    if not record.is_final:
        raise SweeperError(
            f"execution #{record.counter} {record.id} is {record.status}: "
            "only an execution that has ended can be verified"
        )
    return record


def _verify_record(
    project: Project,
    record: ExecutionRecord,
    tolerance: float,
    echo: Echo | None,
    on_record: OnRecord | None,
) -> Verification:
    """Re-run ``record`` here, its new record marked as verifying it, and compare."""
    from sweeper.execution.runner import ExecutionContext, Executor
    from sweeper.execution.verification import compare_records
    from sweeper.runtime import get_runtime

    if tolerance < 0:
        raise SweeperError(f"--tolerance must not be negative, not {tolerance:g}")
    spec = rerun_spec(project, record)
    notes = _image_notes(record, spec)
    context = ExecutionContext(verifies={"execution": record.id, "tolerance": tolerance})
    executor = Executor(project.open_store(create=True), get_runtime(spec.runtime))
    new = executor.run(spec, context=context, echo=echo, on_record=on_record, raise_bad_input=True)
    return compare_records(record, new, tolerance=tolerance, notes=notes)


def _image_notes(record: ExecutionRecord, spec: ExecutionSpec) -> list[str]:
    """Whether the image tag the execution named still means the digest it ran (the re-run
    runs that digest either way)."""
    from sweeper.runtime import get_runtime

    tag = record.spec.get("image")
    if record.image is None or not tag or not record.image_digest or tag == spec.image:
        return []
    try:
        now = get_runtime(spec.runtime).resolve_image(str(tag), "never")
    except SweeperError:
        return [f"image: {tag} is not here any more; ran the recorded {record.image_digest}"]
    if now != record.image_digest:
        return [f"image: {tag} has moved to {now}; ran the recorded {record.image_digest}"]
    return []


def _complete_trials(store: RecordStore, sweep_id: str) -> list[ExecutionRecord]:
    """The sweep's complete trials, one per trial number (its last attempt), by number."""
    import pyarrow.compute as pc

    table = store.read_dataset("executions", ["execution_id", "sweep_id", "trial_number", "status"])
    if table.num_rows == 0:
        return []
    rows = table.filter(pc.equal(table["sweep_id"], sweep_id)).to_pylist()
    by_trial = {}
    for row in sorted(rows, key=lambda r: r["execution_id"]):
        if row["status"] == Status.COMPLETE and row["trial_number"] is not None:
            by_trial[row["trial_number"]] = row["execution_id"]
    records = [store.get_record(by_trial[number]) for number in sorted(by_trial)]
    return [record for record in records if record is not None]


def _spread(items: Sequence[ExecutionRecord], count: int) -> list[ExecutionRecord]:
    """``count`` of ``items`` evenly spaced, the first and the last among them (all of them
    when there are no more than ``count``)."""
    if count >= len(items):
        return list(items)
    if count == 1:
        return [items[0]]
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]
