"""A pipeline run as a frozen plan: everything decided before any node starts.

:class:`PipelineOptions` are what a user asked for; :class:`RunSource` is what a run was
started with (the options, the valohai.yaml text, the code snapshot), saved in its
``run.json`` so that ``resume`` needs only the run's id. :meth:`PipelinePlan.build` turns a
source into a :class:`PipelinePlan`: the checked graph, every node's typed parameter values
and ``--input`` URIs, and one :class:`~sweeper.execution.spec.SpecTemplate` per node that
runs a step. Building a plan starts no Ray and changes nothing; the
:class:`~sweeper.pipeline.policy.PipelinePolicy` reads it and never changes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sweeper.config import Config, parse_config
from sweeper.execution.ids import new_execution_id
from sweeper.execution.spec import SpecTemplate
from sweeper.pipeline.graph import NodePlan, PipelineGraph


@dataclass(frozen=True)
class PipelineOptions:
    """What a pipeline run was started with (saved with it, so ``resume`` needs only the id)."""

    pipeline: str
    parameters: Mapping[str, list[str]] = field(default_factory=dict)
    inputs: Mapping[str, list[str]] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict)
    reuse: bool = False
    runtime: str = "local"
    address: str | None = None
    pull_policy: str = "missing"
    max_retries: int = 1
    fresh_actors: bool = False


@dataclass(frozen=True)
class RunSource:
    """What a run was started with, as its ``run.json`` keeps it: enough to plan it again."""

    options: PipelineOptions
    config_text: str
    config_filename: str
    project_dir: str
    code_version: str
    code_archive: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSource:
        """Read the source back from a saved ``run.json``."""
        return cls(
            options=PipelineOptions(**data["options"]),
            config_text=str(data["config_text"]),
            config_filename=str(data.get("config_filename", "valohai.yaml")),
            project_dir=str(data["project_dir"]),
            code_version=str(data["code_version"]),
            code_archive=data.get("code_archive"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The source's keys of ``run.json`` (the pipeline's name first)."""
        return {
            "pipeline": self.options.pipeline,
            "options": asdict(self.options),
            "config_text": self.config_text,
            "config_filename": self.config_filename,
            "project_dir": self.project_dir,
            "code_version": self.code_version,
            "code_archive": self.code_archive,
        }

    def on(self, address: str | None) -> RunSource:
        """The same source run on another Ray cluster (``resume --address``); itself for None."""
        if not address:
            return self
        return replace(self, options=replace(self.options, address=address))


@dataclass(frozen=True)
class PipelinePlan:
    """One pipeline run, decided: its graph, values, inputs and spec templates (see the module).

    ``resuming`` says the run exists in the store already (``run_id`` is its id): its policy
    loads its state and settles what a killed driver left instead of creating it.
    """

    source: RunSource
    graph: PipelineGraph
    run_id: str
    resuming: bool
    #: Typed parameter values per node, from pipeline parameters and ``-p``.
    values: Mapping[str, Mapping[str, Any]]
    #: ``--input NODE.INPUT=URI`` per node.
    cli_inputs: Mapping[str, Mapping[str, list[str]]]
    #: What every execution of a node shares, by node (deployment nodes have none).
    templates: Mapping[str, SpecTemplate]
    #: Whether completed executions with an identical spec are reused.
    reuse: bool

    @classmethod
    def build(
        cls,
        source: RunSource,
        config: Config | None = None,
        *,
        run_id: str = "",
        resuming: bool = False,
    ) -> PipelinePlan:
        """Check the pipeline, its parameters and its required inputs, and plan the run.

        ``config`` is the parsed valohai.yaml when the caller has it; else the source's text
        is parsed, leniently: on resume only the pipeline itself must still be valid. A new
        run gets a new id unless ``run_id`` is given.
        Raises :class:`~sweeper.pipeline.graph.PipelineError` before anything runs.
        """
        if config is None:
            config = parse_config(source.config_text, filename=source.config_filename, strict=False)
        options = source.options
        graph = PipelineGraph.build(config, options.pipeline)
        values = graph.parameter_values(options.parameters)
        cli_inputs = graph.node_inputs(options.inputs)
        graph.check_required_inputs(cli_inputs)
        return cls(
            source=source,
            graph=graph,
            run_id=run_id or new_execution_id(),
            resuming=resuming,
            values=values,
            cli_inputs=cli_inputs,
            templates={
                name: _template(source, node)
                for name, node in graph.plans.items()
                if node.step is not None
            },
            reuse=options.reuse or bool(graph.pipeline.reuse_executions),
        )

    @property
    def options(self) -> PipelineOptions:
        """The options the run was started with."""
        return self.source.options

    def node_template(
        self, name: str, inputs: Mapping[str, list[str]], environment: Mapping[str, str]
    ) -> SpecTemplate:
        """Node ``name``'s template with the inputs and environment its edges gave it.

        The run's ``-e`` variables come first; the edges' win.
        """
        return replace(
            self.templates[name],
            inputs=dict(inputs),
            environment={**self.options.environment, **environment},
        )


def _template(source: RunSource, node: NodePlan) -> SpecTemplate:
    return SpecTemplate(
        step=node.run_step,
        code_version=source.code_version,
        code_archive=source.code_archive,
        project_dir=source.project_dir,
        runtime=source.options.runtime,
        pull_policy=source.options.pull_policy,
    )
