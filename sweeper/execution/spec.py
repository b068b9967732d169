"""The immutable, content-addressed description of one execution.

A spec is everything needed to run a step again exactly: the step definition as resolved,
the image, the rendered commands, typed parameter values, requested input URIs, the
environment, resources and the code snapshot. Checksums of the inputs and the image
digest are added when the execution runs; ``spec_hash`` over all of it identifies
identical runs for ``--reuse``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from sweeper.errors import SweeperError

if TYPE_CHECKING:
    from sweeper.config import Step
    from sweeper.execution.inputs import InputLike, StagedFile
    from sweeper.record import ExecutionRecord

#: Environment variable names whose values never appear in records or logs.
SECRET_PATTERNS = ("*TOKEN*", "*SECRET*", "*PASSWORD*")
MASK = "****"


def is_secret_name(name: str, declared: frozenset[str] = frozenset()) -> bool:
    """True when a variable's value must be masked: declared secret or a secret-looking name."""
    upper = name.upper()
    return name in declared or any(fnmatch.fnmatchcase(upper, p) for p in SECRET_PATTERNS)


@dataclass(frozen=True)
class ExecutionSpec:
    """One run of one step, fully resolved (see the module docstring)."""

    step: str
    step_definition: Mapping[str, Any]
    image: str | None
    commands: tuple[str, ...]
    parameters: Mapping[str, Any]
    inputs: Mapping[str, tuple[str, ...]]
    environment: Mapping[str, str]
    code_version: str
    code_archive: str | None
    project_dir: str
    runtime: str = "local"
    secret_names: frozenset[str] = frozenset()
    cpus: float | None = None
    memory_mb: int | None = None
    gpus: float = 0.0
    time_limit_s: float | None = None
    no_output_timeout_s: float | None = None
    pull_policy: str = "missing"
    step_stop_condition: str | None = None
    mounts: tuple[tuple[str, str, bool], ...] = ()
    step_inputs: tuple[InputLike, ...] = field(default=(), compare=False)
    #: Local input files the driver put into the store for a node without its disk, by URI
    #: (see :class:`sweeper.execution.inputs.InputStager`); not part of the record.
    staged_inputs: Mapping[str, tuple[StagedFile, ...]] = field(default_factory=dict, compare=False)

    @classmethod
    def from_record(
        cls,
        record: ExecutionRecord,
        *,
        project_dir: str,
        inputs: Mapping[str, Sequence[str]],
        step_inputs: tuple[InputLike, ...] = (),
        pull_policy: str = "never",
    ) -> ExecutionSpec:
        """The spec that runs a recorded execution again, as it ran.

        The image is the recorded digest when the runtime used images (the record keeps an
        ``image`` only then), so a re-run gets the very image of the first run. Secret values
        were never recorded: those variables are left out (give them again). The caller
        chooses ``inputs`` (e.g. ``datum://<sha256>`` for an input still in the store) and
        ``step_inputs`` (the step's declared inputs, from its recorded definition).

        >>> from sweeper.record import ExecutionRecord
        >>> record = ExecutionRecord.from_dict({"id": "e1", "step": "train", "runtime": "local",
        ...     "spec": {"commands": ["python t.py"], "environment": {"A": "1", "KEY": "****"}}})
        >>> spec = ExecutionSpec.from_record(record, project_dir=".", inputs={})
        >>> spec.commands, dict(spec.environment), spec.image
        (('python t.py',), {'A': '1'}, None)
        """
        data = record.spec
        image = data.get("image")
        if record.image is not None:
            image = record.image_digest or image
        return cls(
            step=record.step,
            step_definition=data.get("step_definition") or {},
            image=image,
            commands=tuple(data.get("commands") or record.command),
            parameters=dict(record.parameters),
            inputs={name: tuple(uris) for name, uris in inputs.items()},
            environment={k: v for k, v in (data.get("environment") or {}).items() if v != MASK},
            code_version=record.code_version or "",
            code_archive=data.get("code_archive"),
            project_dir=project_dir,
            runtime=data.get("runtime") or record.runtime,
            cpus=data.get("cpus"),
            memory_mb=data.get("memory_mb"),
            gpus=float(data.get("gpus") or 0),
            time_limit_s=data.get("time_limit_s"),
            no_output_timeout_s=data.get("no_output_timeout_s"),
            pull_policy=pull_policy,
            mounts=tuple((m[0], m[1], bool(m[2])) for m in data.get("mounts") or ()),
            step_inputs=step_inputs,
        )

    def masked_environment(self) -> dict[str, str]:
        """The environment as records show it: secret values replaced by ``****``."""
        return {
            k: (MASK if is_secret_name(k, self.secret_names) else v)
            for k, v in self.environment.items()
        }

    def masked_step_definition(self) -> dict[str, Any]:
        """The step definition with default values of secret variables masked."""
        definition = dict(self.step_definition)
        variables = definition.get("environment-variables")
        if isinstance(variables, list):
            definition["environment-variables"] = [
                {**v, "default": MASK}
                if isinstance(v, dict)
                and "default" in v
                and is_secret_name(str(v.get("name")), self.secret_names)
                else v
                for v in variables
            ]
        return definition

    def secret_values(self) -> list[str]:
        """Values to scrub from logs (only non-trivial ones, to avoid masking noise)."""
        return [
            v
            for k, v in self.environment.items()
            if is_secret_name(k, self.secret_names) and len(v) >= 4
        ]

    def resources(self) -> dict[str, Any]:
        """The resources an actor reserves for this execution."""
        return {"cpus": self.cpus, "memory_mb": self.memory_mb, "gpus": self.gpus}

    def to_record(self) -> dict[str, Any]:
        """A JSON-able form with secrets masked (what records and Parquet keep)."""
        data = asdict(self)
        data.pop("step_inputs", None)
        data.pop("staged_inputs", None)
        data["environment"] = self.masked_environment()
        data["step_definition"] = self.masked_step_definition()
        data["secret_names"] = sorted(self.secret_names)
        data["inputs"] = {k: list(v) for k, v in self.inputs.items()}
        data["commands"] = list(self.commands)
        # Lists, as JSON gives them back: a record read from the store equals the one written.
        data["mounts"] = [list(mount) for mount in self.mounts]
        return data

    def spec_hash(self, input_checksums: Sequence[tuple[str, str, str]], image: str | None) -> str:
        """Identity of a run: same code, image, command, parameters and input contents.

        ``image`` is the image that makes the run what it is: its digest (else its name)
        where the runtime uses images, None where it ignores them (see
        :attr:`sweeper.runtime.Runtime.uses_images`).
        """
        identity = {
            "step": self.step_definition,
            "image": image,
            "commands": list(self.commands),
            "parameters": dict(self.parameters),
            "inputs": sorted(input_checksums),
            # VH_SEED is a sweep trial's own seed (sweep/reproducible.py): a trial with the same
            # parameters answers --reuse whatever its number
            "environment": {k: v for k, v in self.masked_environment().items() if k != "VH_SEED"},
            "code_version": self.code_version,
            "runtime": self.runtime,
        }
        text = json.dumps(identity, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


def parse_assignments(pairs: Sequence[str], what: str) -> dict[str, list[str]]:
    """Turn repeated ``NAME=VALUE`` options into ``{name: [values...]}`` in the given order."""
    out: dict[str, list[str]] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise SweeperError(f'{what} "{pair}" is not of the form NAME=VALUE')
        out.setdefault(name.strip(), []).append(value)
    return out


def build_spec(
    step: Step,
    *,
    parameters: Mapping[str, Any],
    inputs: Mapping[str, Sequence[str]],
    code_version: str,
    code_archive: str | None,
    project_dir: str,
    runtime: str = "local",
    environment: Mapping[str, str] | None = None,
    cpus: float | None = None,
    gpus: float | None = None,
    pull_policy: str = "missing",
) -> ExecutionSpec:
    """Resolve a :class:`sweeper.config.Step` and typed values into an :class:`ExecutionSpec`.

    ``parameters`` are typed values (already validated); step defaults fill the rest.
    ``inputs`` are the URIs per input name after defaults were applied. The spec of a
    one-off :class:`SpecTemplate`.
    """
    template = SpecTemplate(
        step=step,
        code_version=code_version,
        code_archive=code_archive,
        project_dir=project_dir,
        inputs=inputs,
        runtime=runtime,
        environment=environment or {},
        cpus=cpus,
        gpus=gpus,
        pull_policy=pull_policy,
    )
    return template.build(parameters)


@dataclass(frozen=True)
class SpecTemplate:
    """What every execution of one run shares; :meth:`build` adds the parameter values.

    The one way sweeps, pipelines and single runs make their specs: a sweep keeps one
    template and builds a spec per trial; a pipeline keeps one per node (its step, inputs and
    environment are the node's, set with :func:`dataclasses.replace`).
    """

    step: Step
    code_version: str
    code_archive: str | None
    project_dir: str
    inputs: Mapping[str, Sequence[str]] = field(default_factory=dict)
    runtime: str = "local"
    environment: Mapping[str, str] = field(default_factory=dict)
    cpus: float | None = None
    gpus: float | None = None
    pull_policy: str = "missing"

    def build(self, parameters: Mapping[str, Any]) -> ExecutionSpec:
        """The spec of one execution with these typed parameter values (defaults fill the rest)."""
        step = self.step
        values = dict(step.default_parameter_values())
        values.update(parameters)
        variables = step.environment_variables
        env = {v.name: str(v.default) for v in variables if v.default is not None}
        env.update(self.environment)
        resources = step.resources
        stop_condition = step.stop_condition
        return ExecutionSpec(
            step=step.name,
            step_definition=step.serialize(),
            image=step.image,
            commands=tuple(step.build_command(values)),
            parameters=values,
            inputs={k: tuple(v) for k, v in self.inputs.items()},
            environment=env,
            secret_names=frozenset(v.name for v in variables if v.secret),
            code_version=self.code_version,
            code_archive=self.code_archive,
            project_dir=self.project_dir,
            runtime=self.runtime,
            cpus=self.cpus if self.cpus is not None else (resources.cpu_min or None),
            memory_mb=resources.memory_max or resources.memory_min or None,
            gpus=float(self.gpus) if self.gpus is not None else float(resources.gpus or 0),
            time_limit_s=step.time_limit or None,
            no_output_timeout_s=step.no_output_timeout or None,
            pull_policy=self.pull_policy,
            step_stop_condition=str(stop_condition) if stop_condition is not None else None,
            mounts=_bind_mounts(step),
            step_inputs=tuple(step.inputs),
        )


def _bind_mounts(step: Step) -> tuple[tuple[str, str, bool], ...]:
    """The step's declared mounts as (source, destination, read-only) bind mounts."""
    mounts = []
    for mount in step.mounts:
        if mount.type not in (None, "bind"):
            raise SweeperError(
                f'step "{step.name}": mount type "{mount.type}" ({mount.destination}) is not '
                "supported; only bind mounts of host folders are"
            )
        mounts.append((mount.source, mount.destination, bool(mount.readonly)))
    return tuple(mounts)
