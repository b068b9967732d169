"""Running a pipeline run: its options, its graph, and the controller that runs it.

:class:`PipelineRunner` checks the pipeline and its parameters and inputs, and hands the run
to the one :class:`~sweeper.cluster.controller.Controller` with a
:class:`~sweeper.pipeline.policy.PipelinePolicy` that decides it: which node is ready, what
its edges give it, what its ``on-error`` and ``actions`` say. Each execution runs on a Ray
actor that holds its step's CPUs and GPUs, so independent nodes (and the variants of a task
node) run concurrently as far as the cluster allows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sweeper.cluster.controller import Controller
from sweeper.config import Config
from sweeper.execution.ids import new_execution_id
from sweeper.pipeline.graph import PipelineGraph
from sweeper.pipeline.policy import PipelinePolicy
from sweeper.pipeline.state import NodeState, PipelineState
from sweeper.status import Status
from sweeper.store import RecordStore


@dataclass
class PipelineOptions:
    """What a pipeline run was started with (saved with it, so ``resume`` needs only the id)."""

    pipeline: str
    parameters: dict[str, list[str]] = field(default_factory=dict)
    inputs: dict[str, list[str]] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    reuse: bool = False
    runtime: str = "local"
    address: str | None = None
    pull_policy: str = "missing"
    max_retries: int = 1
    fresh_actors: bool = False


class PipelineRunner:
    """Runs (or resumes) one pipeline run against a store and a Ray cluster."""

    def __init__(
        self,
        *,
        config: Config,
        config_text: str,
        store: RecordStore,
        project_dir: Path,
        options: PipelineOptions,
        code_version: str,
        code_archive: str | None,
        run_id: str | None = None,
        state: PipelineState | None = None,
    ) -> None:
        self.config = config
        self.config_text = config_text
        self.store = store
        self.project_dir = Path(project_dir)
        self.options = options
        self.code_version = code_version
        self.code_archive = code_archive
        self.graph = PipelineGraph.build(config, options.pipeline)
        self.values = self.graph.parameter_values(options.parameters)
        self.cli_inputs = self.graph.node_inputs(options.inputs)
        self.graph.check_required_inputs(self.cli_inputs)
        self.reuse = options.reuse or bool(self.graph.pipeline.reuse_executions)
        self.resuming = state is not None
        self.run_id = state.run_id if state is not None else (run_id or new_execution_id())
        self.state = state or PipelineState(store, self.run_id)
        self.on_event: Callable[[str], None] | None = None

    @classmethod
    def for_resume(
        cls, store: RecordStore, run_id: str, *, address: str | None = None
    ) -> PipelineRunner:
        """A runner that continues run ``run_id`` with the configuration it was started with."""
        from sweeper.config import parse_config

        state = PipelineState.load(store, run_id)
        data = state.data
        options = PipelineOptions(**data["options"])
        if address:
            options.address = address
        config = parse_config(
            data["config_text"],
            filename=data.get("config_filename", "valohai.yaml"),
            strict=False,  # the pipeline alone must still be valid (PipelineGraph.build)
        )
        return cls(
            config=config,
            config_text=data["config_text"],
            store=store,
            project_dir=Path(data["project_dir"]),
            options=options,
            code_version=data["code_version"],
            code_archive=data.get("code_archive"),
            state=state,
        )

    def event(self, text: str) -> None:
        """Tell the caller what happened (a node started, an execution ended...)."""
        if self.on_event is not None:
            self.on_event(text)

    def save(self, *, row: bool = False, **changes: Any) -> None:
        """Save the run's state (``changes`` included); with ``row``, a ``pipeline_runs`` row."""
        self.state.save(row=row, **changes)

    def create(self) -> None:
        """Record the new run, every node pending, before any node starts."""
        self.state.create(
            {
                "pipeline": self.graph.name,
                "options": asdict(self.options),
                "config_text": self.config_text,
                "config_filename": self.config.filename,
                "project_dir": str(self.project_dir),
                "code_version": self.code_version,
                "code_archive": self.code_archive,
            },
            {
                name: NodeState(name=name, type=plan.node.type)
                for name, plan in self.graph.plans.items()
            },
        )

    def run(self, *, on_event: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Run every node to its end; return the ``--json`` summary.

        Raises :class:`~sweeper.pipeline.graph.PipelineError` (after recording the run as
        ``error``) when an edge cannot be resolved at run time, e.g. a metadata key the
        source never printed.
        """
        self.on_event = on_event
        if self.resuming and self.state.status == Status.COMPLETE:
            return self.state.summary()
        policy = PipelinePolicy(self)
        Controller(
            self.store,
            address=self.options.address,
            runtime=self.options.runtime,
            fresh_actors=self.options.fresh_actors,
        ).run(policy)
        if policy.failure is not None:
            raise policy.failure
        return self.state.summary()
