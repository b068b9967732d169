"""A failure's class is the kind its record was given where the failure was known; text is
read only for records written before the kind existed. No Ray, no Optuna study."""

from __future__ import annotations

import doctest
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import sweeper.runtime.base as runtime_base
import sweeper.sweep.failures as failures
from sweeper.cluster import recovery
from sweeper.record import ExecutionRecord, FailureKind
from sweeper.status import Status
from sweeper.store import Store
from sweeper.sweep.failures import (
    FAILURE_CLASSES,
    INFRASTRUCTURE,
    NO_OUTPUT,
    OOM,
    RESOURCE_CLASSES,
    TIME_LIMIT,
    USER_ERROR,
    FailureGroup,
    class_counts,
    failure_class,
    failure_reason,
    group_reasons,
    legacy_failure_class,
)


def failed(kind: FailureKind | None, **fields: Any) -> ExecutionRecord:
    return ExecutionRecord(id="e1", status=Status.ERROR, failure_kind=kind, **fields)


def legacy(**fields: Any) -> ExecutionRecord:
    """A record as written before records had a failure kind."""
    return ExecutionRecord.from_dict({"id": "e1", "status": "error", **fields})


def test_the_public_names_are_the_kinds() -> None:
    assert (OOM, TIME_LIMIT, NO_OUTPUT, INFRASTRUCTURE, USER_ERROR) == tuple(FailureKind)
    assert OOM == "oom" and f"{INFRASTRUCTURE}" == "infrastructure"
    # what the sweep tells Optuna as infeasible: a no-output timeout is a time limit
    assert RESOURCE_CLASSES == {"oom", "time_limit", "no_output"}
    assert FAILURE_CLASSES == ("oom", "time_limit", "user_error", "infrastructure")


@pytest.mark.parametrize("kind", list(FailureKind))
def test_the_class_is_the_kind_whatever_the_messages_say(kind: FailureKind) -> None:
    # Every phrase the text rules knew, and a log that ran out of memory: the kind wins.
    misleading = failed(
        kind,
        exit_code=137,
        error="time limit: Docker said the Ray actor's node died (OOM killer)",
    )
    expected = TIME_LIMIT if kind is NO_OUTPUT else kind
    assert failure_class(misleading, "Traceback\nMemoryError") is expected


def test_an_error_that_names_docker_stays_the_users() -> None:
    record = failed(USER_ERROR, exit_code=None, error="cannot reach my Docker registry mirror")
    assert failure_class(record) is USER_ERROR
    assert legacy_failure_class(legacy(error="cannot reach my Docker registry mirror")) == (
        INFRASTRUCTURE  # what the text rules made of it
    )


def test_a_complete_execution_failed_by_the_sweep_is_a_user_error() -> None:
    # the step completed without printing the metric: its own words decide nothing
    complete = ExecutionRecord(id="e1", status=Status.COMPLETE, exit_code=0)
    assert failure_class(complete, "MemoryError") is USER_ERROR


@pytest.mark.parametrize(
    ("fields", "log", "kind"),
    [
        ({"status": "crashed", "error": "the Ray actor running it died"}, "", INFRASTRUCTURE),
        ({"exit_code": 137}, "", OOM),
        ({"error": "killed by the OOM killer (memory limit 64 MB)", "exit_code": 0}, "", OOM),
        ({"exit_code": 1}, "x\nRuntimeError: CUDA out of memory. Tried", OOM),
        ({"exit_code": 1}, "MemoryError\n" + "line\n" * 200, USER_ERROR),
        ({"error": "time limit of 5s exceeded", "exit_code": 143}, "", TIME_LIMIT),
        ({"error": "no output for 5s", "exit_code": 143}, "", TIME_LIMIT),
        ({"error": "cannot pull image 'x' (pull policy 'missing'): nope"}, "", INFRASTRUCTURE),
        ({"error": "the code snapshot abc is no longer in the store s"}, "", INFRASTRUCTURE),
        ({"error": 'input "data": no such file /d.csv'}, "", USER_ERROR),
        ({"exit_code": 1}, "ValueError: bad lr", USER_ERROR),
    ],
)
def test_the_legacy_fallback_classes_records_without_a_kind(
    fields: dict[str, Any], log: str, kind: FailureKind
) -> None:
    record = legacy(**fields)
    assert record.failure_kind is None
    assert failure_class(record, log) is kind


def test_failure_reason_reads_the_typed_record() -> None:
    record = failed(USER_ERROR, exit_code=1, error="exit code 1")
    assert failure_reason(record, log_text="Traceback\nValueError: bad") == (
        "exit code 1: ValueError: bad"
    )
    assert failure_reason(failed(OOM, exit_code=3)) == "exit code 3"
    assert failure_reason(ExecutionRecord(id="e", status=Status.CRASHED)) == "crashed"
    assert failure_reason(record, reason="the step never printed the metric loss") == (
        "the step never printed the metric loss"
    )


def test_groups_and_counts_hold_plain_text() -> None:
    groups = group_reasons([("e1", "exit code 1", USER_ERROR), ("e2", "exit code 137", OOM)])
    assert [type(group.failure_class) for group in groups] == [str, str]
    assert class_counts(groups) == {"oom": 1, "time_limit": 0, "user_error": 1, "infrastructure": 0}
    assert [type(key) for key in class_counts(groups)] == [str] * 4
    assert str(FailureGroup("exit code 137", 1, "e2", OOM)) == "1 x oom: exit code 137 (e.g. e2)"


def test_a_dead_actor_is_an_infrastructure_failure(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store", create=True)
    planned = ExecutionRecord(id="e1", step="train", status=Status.STARTED)
    store.put_record(planned)
    crashed = recovery.mark_crashed(store, "e1", "the Ray actor running it died: boom")
    assert (crashed.status, crashed.failure_kind) == (Status.CRASHED, INFRASTRUCTURE)
    assert store.get_record("e1") == crashed
    (row,) = store.read_dataset("executions").to_pylist()
    assert row["failure_kind"] == "infrastructure"
    never_written = recovery.mark_crashed(store, "e2", "the driver died", sweep_id="s1")
    assert never_written.failure_kind is INFRASTRUCTURE


@pytest.mark.parametrize("module", [failures, runtime_base])
def test_docstring_examples_run(module: ModuleType) -> None:
    assert doctest.testmod(module).failed == 0
