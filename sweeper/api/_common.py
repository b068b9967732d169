"""What the API modules share: callbacks and ``-p`` texts."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sweeper.project import Project
    from sweeper.record import ExecutionRecord


Echo = Callable[[str], None]
OnRecord = Callable[["ExecutionRecord"], None]


def as_texts(value: Any) -> list[str]:
    """A Python value as the texts ``-p NAME=VALUE`` would give (a list for a multiple one)."""
    values = value if isinstance(value, list | tuple) else [value]
    return [v if isinstance(v, str) else str(v) for v in values]


def start_ray(
    project: Project,
    address: str | None,
    *,
    step: str | None = None,
    task: str | None = None,
    pipeline: str | None = None,
) -> None:
    """Check the valohai.yaml and the names given, then begin Ray's start-up in the background.

    Ray takes seconds to start, much of them waiting for its own processes: the engine's
    imports, the search space, the code snapshot and the store are prepared meanwhile, and
    the controller's ``connect()`` waits for the start (and raises its error). A broken
    valohai.yaml or an unknown step, task or pipeline fails here, before Ray starts; a
    later error (a bad search space) ends the process without waiting for Ray.
    """
    from sweeper.cluster.connect import connect_in_background

    if step is not None:
        project.config.get_step(step)
    if task:
        project.config.get_task(task)
    if pipeline is not None:
        from sweeper.pipeline.graph import PipelineGraph

        PipelineGraph.build(project.config, pipeline)  # the runner's own check, its errors
    connect_in_background(address)
