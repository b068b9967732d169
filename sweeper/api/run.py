"""One execution: :func:`run` a step here or on a cluster, :func:`rerun` a recorded one."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import yaml

from sweeper.api._common import Echo, OnRecord, as_texts
from sweeper.errors import SweeperError
from sweeper.project import Project, project_from
from sweeper.runtime import DEFAULT_RUNTIME

if TYPE_CHECKING:
    from sweeper.config import Step
    from sweeper.execution.runner import StopToken
    from sweeper.execution.spec import ExecutionSpec
    from sweeper.record import ExecutionRecord


def _execute(
    project: Project,
    spec: ExecutionSpec,
    *,
    reuse: bool,
    echo: Echo | None,
    stop: StopToken | None,
    on_record: OnRecord | None,
    address: str | None = None,
) -> ExecutionRecord:
    """Run ``spec`` here, in this process; or, given a Ray ``address``, on that cluster.

    On a cluster the execution takes the path every cluster execution takes: the
    :class:`~sweeper.cluster.controller.Controller` runs it on a Ray actor, with a policy
    of one execution (:class:`~sweeper.cluster.single.SingleRun`).
    """
    store = project.open_store(create=True)
    if address is not None:
        from sweeper.cluster.controller import Controller
        from sweeper.cluster.single import SingleRun

        policy = SingleRun(spec, store, reuse=reuse, stop=stop, echo=echo)
        Controller(store, address=address, runtime=spec.runtime).run(policy)
        assert policy.record is not None  # the controller re-raises when it has none
        policy.echo_log(store, final=True)
        if on_record is not None:
            on_record(policy.record)
        return policy.record
    from sweeper.execution.runner import Executor
    from sweeper.runtime import get_runtime

    executor = Executor(store, get_runtime(spec.runtime))
    return executor.run(
        spec, reuse=reuse, stop=stop, echo=echo, on_record=on_record, raise_bad_input=True
    )


def run(
    step: str,
    *,
    parameters: Mapping[str, Any] | None = None,
    inputs: Mapping[str, Sequence[str]] | None = None,
    environment: Mapping[str, str] | None = None,
    runtime: str = DEFAULT_RUNTIME,
    pull_policy: str = "missing",
    reuse: bool = False,
    config: str | os.PathLike[str] = "valohai.yaml",
    store: str | None = None,
    address: str | None = None,
    echo: Echo | None = None,
    stop: StopToken | None = None,
    on_record: OnRecord | None = None,
) -> ExecutionRecord:
    """Run one execution of ``step`` of the valohai.yaml ``config`` and return its final record.

    ``parameters`` are checked and typed like ``-p NAME=VALUE`` (a list for a multiple
    parameter); ``inputs`` maps an input name to its URIs, replacing the step's default. The
    project's files are snapshotted into ``store`` (default ``.sweeper/`` next to the
    valohai.yaml) and the step runs in ``runtime``: in this process, or with ``address``
    (``auto``, ``HOST:PORT``) on a Ray actor of that cluster, as a sweep's trials run. ``echo``
    sees each log line, ``on_record`` the record each time it is stored (on a cluster: the
    final one), and ``stop`` stops the execution from another thread. A failed step is a
    record with status ``error``; bad input (an unknown parameter, a missing input or image)
    raises :class:`~sweeper.errors.SweeperError` and runs nothing (on a cluster, an input or
    image the node cannot get is a record with status ``error``).
    """
    project = project_from(config, store)
    spec = _spec(
        project,
        step,
        parameters or {},
        inputs or {},
        runtime=runtime,
        environment=environment or {},
        pull_policy=pull_policy,
    )
    return _execute(
        project, spec, reuse=reuse, echo=echo, stop=stop, on_record=on_record, address=address
    )


def _spec(
    project: Project,
    step: str,
    parameters: Mapping[str, Any],
    inputs: Mapping[str, Sequence[str]],
    *,
    runtime: str,
    environment: Mapping[str, str],
    pull_policy: str,
) -> ExecutionSpec:
    """The spec of one run of ``step``: its values checked and typed, its inputs resolved
    (nothing read yet) and the project's code snapshotted into the store."""
    from sweeper.execution.inputs import resolve_inputs
    from sweeper.execution.spec import build_spec

    step_obj = project.config.get_step(step)
    values = step_obj.parse_parameter_values(
        {name: as_texts(value) for name, value in parameters.items()}
    )
    uris = resolve_inputs(
        step_obj.inputs,
        {name: [uris] if isinstance(uris, str) else list(uris) for name, uris in inputs.items()},
        project_dir=project.directory,
    )
    version, archive = project.snapshot_code(project.open_store(create=True))
    return build_spec(
        step_obj,
        parameters=values,
        inputs=uris,
        code_version=version,
        code_archive=archive,
        project_dir=str(project.directory),
        runtime=runtime,
        environment=dict(environment),
        pull_policy=pull_policy,
    )


def _recorded_step(record: ExecutionRecord) -> Step:
    """The step as the execution recorded it (its valohai.yaml may have changed since)."""
    from sweeper.config import parse_config

    definition = record.spec.get("step_definition")
    if not definition:
        raise SweeperError(f"execution {record.id} has no step definition to re-run")
    config = parse_config(
        yaml.safe_dump([{"step": dict(definition)}], sort_keys=False),
        filename=f"execution {record.id}",
    )
    return next(iter(config.steps.values()))


def rerun(
    execution: str,
    *,
    config: str | os.PathLike[str] = "valohai.yaml",
    store: str | None = None,
    echo: Echo | None = None,
    stop: StopToken | None = None,
    on_record: OnRecord | None = None,
) -> ExecutionRecord:
    """Run ``execution`` (an id, ``#counter`` or ``latest``) again as it ran; the new record.

    The re-run gets the recorded image digest, code snapshot, parameters and the inputs by
    checksum (from the store while it holds them, else from their URIs). Secret variables
    were never recorded and are left out. Raises :class:`~sweeper.errors.SweeperError` when
    the code snapshot is gone or an input read from its URI changed (the new record is
    stored all the same).
    """
    from sweeper.record import ExecutionRecord

    project = project_from(config, store)
    record = ExecutionRecord.from_dict(project.open_store().find_execution(execution))
    spec = rerun_spec(project, record)
    new = _execute(project, spec, reuse=False, echo=echo, stop=stop, on_record=on_record)
    for old, now in zip(record.inputs, new.inputs, strict=False):
        if old["sha256"] != now["sha256"]:
            raise SweeperError(
                f'input "{old["name"]}" changed since {record.id}: {old["uri"]} has a different checksum'
            )
    return new


def rerun_spec(project: Project, record: ExecutionRecord) -> ExecutionSpec:
    """The spec that runs ``record`` again as it ran (see :func:`rerun`), its image checked.

    Raises :class:`~sweeper.errors.SweeperError` when the code snapshot is gone from the
    store or the recorded image is not here.
    """
    from sweeper.execution.spec import ExecutionSpec
    from sweeper.runtime import get_runtime

    opened = project.open_store()
    step_obj = _recorded_step(record)
    archive = record.spec.get("code_archive")
    if archive and not opened.has_blob(archive):
        raise SweeperError(
            f"execution {record.id} cannot be re-run: its code snapshot is no longer in the store"
        )
    inputs: dict[str, list[str]] = {}
    for item in record.inputs:
        uri = f"datum://{item['sha256']}" if opened.has_blob(item["sha256"]) else item["uri"]
        inputs.setdefault(item["name"], []).append(uri)
    spec = ExecutionSpec.from_record(
        record,
        project_dir=str(project.directory),
        inputs=inputs,
        step_inputs=tuple(step_obj.inputs),
    )
    step_runtime = get_runtime(spec.runtime)
    if step_runtime.uses_images and spec.image:
        step_runtime.resolve_image(spec.image, "never")  # the very image, or a clear error
    return spec


# -- sweeps ------------------------------------------------------------------------------
