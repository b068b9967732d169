"""Pipelines: :func:`run_pipeline` and :func:`resume_pipeline`, returning a :class:`~sweeper.api.results.PipelineResult`."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sweeper.api._common import as_texts, start_ray
from sweeper.errors import StoreError
from sweeper.project import project_from
from sweeper.runtime import DEFAULT_RUNTIME

if TYPE_CHECKING:
    from sweeper.pipeline.plan import PipelineOptions, RunSource
    from sweeper.pipeline.result import PipelineResult
    from sweeper.project import Project
    from sweeper.store import RecordStore

OnEvent = Callable[[str], None]


def run_pipeline(
    name: str,
    *,
    parameters: Mapping[str, Any] | None = None,
    inputs: Mapping[str, str | Sequence[str]] | None = None,
    environment: Mapping[str, str] | None = None,
    runtime: str = DEFAULT_RUNTIME,
    pull_policy: str = "missing",
    reuse: bool = False,
    max_retries: int = 1,
    address: str | None = None,
    config: str | os.PathLike[str] = "valohai.yaml",
    store: str | None = None,
    on_event: OnEvent | None = None,
) -> PipelineResult:
    """Run pipeline ``name`` of the valohai.yaml ``config`` on Ray, as ``sweep pipeline run``.

    ``parameters`` are pipeline parameters (``NAME``) or a node's (``NODE.PARAM``), checked
    and typed like ``-p``; a list on a task node's parameter adds a grid axis. ``inputs``
    maps ``NODE.INPUT`` to its URIs. ``on_event`` sees a line per node start, execution end
    and node end. A node that fails is a result with status ``error``; a pipeline that
    cannot run (an unknown name, an edge that cannot be resolved) raises
    :class:`~sweeper.errors.SweeperError`.
    """
    project = project_from(config, store)
    from sweeper.pipeline.deploying import prepare

    start_ray(project, prepare(project.config, name, address), pipeline=name)
    from sweeper.pipeline.plan import PipelineOptions, PipelinePlan
    from sweeper.pipeline.runner import run_plan

    options = PipelineOptions(
        pipeline=name,
        parameters={key: as_texts(value) for key, value in (parameters or {}).items()},
        inputs={key: _uris(uris) for key, uris in (inputs or {}).items()},
        environment=dict(environment or {}),
        reuse=reuse,
        runtime=runtime,
        address=address,
        pull_policy=pull_policy,
        max_retries=max_retries,
    )
    opened, source = _started(project, options)
    return run_plan(PipelinePlan.build(source, config=project.config), opened, on_event=on_event)


def _started(project: Project, options: PipelineOptions) -> tuple[RecordStore, RunSource]:
    """The run's store and what the run starts with: the valohai.yaml text, a code snapshot."""
    from sweeper.pipeline.plan import RunSource

    opened = project.open_store(create=True)
    version, archive = project.snapshot_code(opened)
    return opened, RunSource(
        options=options,
        config_text=project.config_path.read_text(encoding="utf-8"),
        config_filename=project.config.filename,
        project_dir=str(project.directory),
        code_version=version,
        code_archive=archive,
    )


def _uris(uris: str | Sequence[str]) -> list[str]:
    return [uris] if isinstance(uris, str) else list(uris)


def resume_pipeline(
    run_id: str = "latest",
    *,
    address: str | None = None,
    config: str | os.PathLike[str] = "valohai.yaml",
    store: str | None = None,
    on_event: OnEvent | None = None,
) -> PipelineResult:
    """Continue pipeline run ``run_id`` (or the latest) as ``sweep pipeline resume`` does.

    Completed nodes and executions are kept; what a killed driver left running runs again
    with the options and code the run was started with. ``address`` moves it to another
    Ray cluster.
    """
    from sweeper.pipeline.deploying import prepare_resume

    opened = project_from(config, store).open_store()
    run_id = pipeline_run_id(opened, run_id)
    prepare_resume(opened, run_id, address)  # before Ray is imported (a head's token)
    from sweeper.pipeline.runner import resume_plan, run_plan

    plan = resume_plan(opened, run_id, address=address)
    return run_plan(plan, opened, on_event=on_event)


def pipeline_run_id(store: RecordStore, ref: str) -> str:
    """The id of pipeline run ``ref``: an id, or ``latest`` (the newest run in ``store``)."""
    from sweeper.pipeline.state import latest_runs

    if ref != "latest":
        return ref
    runs = latest_runs(store)
    if not runs:
        raise StoreError(f"no pipeline run in the store {store.location}")
    return runs[0].pipeline_run_id
