"""The whole valohai.yaml: steps, tasks and pipelines, read from text or a file."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sweeper.config.fields import has_control_characters
from sweeper.config.loader import MAX_BYTES, YamlList, YamlMap, load_yaml
from sweeper.config.pipeline import Pipeline
from sweeper.config.problems import Problem, Problems, quoted
from sweeper.config.step import Step
from sweeper.config.task import Task
from sweeper.errors import ConfigError, ParameterValueError

#: Top-level item kinds Valohai knows but sweeper does not run; they are skipped with a warning.
IGNORED_KINDS = ("endpoint", "deployment")
KINDS = ("step", "task", "pipeline", "blueprint", *IGNORED_KINDS)


def _frozen(items: dict[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(items)


@dataclass(frozen=True, kw_only=True)
class Config:
    """A parsed valohai.yaml: ordered, read-only mappings of steps, tasks and pipelines by name.

    ``warnings`` holds the non-fatal problems found while reading it.
    """

    steps: Mapping[str, Step] = field(default_factory=lambda: _frozen({}))
    tasks: Mapping[str, Task] = field(default_factory=lambda: _frozen({}))
    pipelines: Mapping[str, Pipeline] = field(default_factory=lambda: _frozen({}))
    warnings: tuple[Problem, ...] = field(default=(), compare=False)
    filename: str = field(default="valohai.yaml", compare=False)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Config):
            return NotImplemented
        return (dict(self.steps), dict(self.tasks), dict(self.pipelines)) == (
            dict(other.steps),
            dict(other.tasks),
            dict(other.pipelines),
        )

    __hash__ = None  # type: ignore[assignment]

    @staticmethod
    def _get(kind: str, items: Mapping[str, Any], name: str) -> Any:
        if name in items:
            return items[name]
        known = ", ".join(items) or "(none)"
        raise ConfigError(f"unknown {kind} {quoted(name)}; known {kind}s: {known}")

    def get_step(self, name: str) -> Step:
        """The step called ``name``; :class:`ConfigError` naming the known steps otherwise."""
        return self._get("step", self.steps, name)  # type: ignore[no-any-return]

    def get_task(self, name: str) -> Task:
        """The task called ``name``; :class:`ConfigError` naming the known tasks otherwise."""
        return self._get("task", self.tasks, name)  # type: ignore[no-any-return]

    def get_pipeline(self, name: str) -> Pipeline:
        """The pipeline called ``name``; :class:`ConfigError` naming the known ones otherwise."""
        return self._get("pipeline", self.pipelines, name)  # type: ignore[no-any-return]

    def serialize(self) -> list[dict[str, Any]]:
        """The configuration as valohai.yaml data: steps, then tasks, then pipelines."""
        return [
            *({"step": step.serialize()} for step in self.steps.values()),
            *({"task": task.serialize()} for task in self.tasks.values()),
            *({"pipeline": pipeline.serialize()} for pipeline in self.pipelines.values()),
        ]


def _parse(text: str, filename: str) -> tuple[Config | None, Problems]:
    problems = Problems(filename)
    data = load_yaml(text, problems)
    if problems.errors:
        return None, problems
    if data is None:
        problems.error(1, "the file is empty; expected a list of step, task and pipeline items")
        return None, problems
    if not isinstance(data, YamlList):
        problems.error(
            getattr(data, "line", 1),
            'the top level must be a list of step, task and pipeline items ("- step: ...")',
        )
        return None, problems
    steps: dict[str, Step] = {}
    tasks: dict[str, Task] = {}
    pipelines: dict[str, Pipeline] = {}
    for index, item in enumerate(data):
        line = data.line_of(index)
        if not isinstance(item, YamlMap):
            problems.error(line, 'each top-level item must be a mapping such as "- step: ..."')
            continue
        if len(item) != 1:
            keys = ", ".join(quoted(k) for k in item) or "nothing"
            problems.error(
                line,
                f"each top-level item must have exactly one key (step, task or pipeline); found {keys}",
            )
            continue
        kind, body = next(iter(item.items()))
        if kind in IGNORED_KINDS:
            problems.warning(line, f"{kind} items are not run by sweeper; ignored")
            continue
        if kind not in KINDS:
            label = quoted(kind) if not has_control_characters(kind) else "with control characters"
            problems.error(
                line, f"unknown top-level item {label}; expected one of: step, task, pipeline"
            )
            continue
        if not isinstance(body, YamlMap):
            problems.error(item.value_line(kind), f"{kind} must be a mapping")
            continue
        if kind == "step":
            _add(steps, Step.parse(body, problems), "step", problems)
        elif kind == "task":
            _add(tasks, Task.parse(body, problems), "task", problems)
        else:
            _add(pipelines, Pipeline.parse(body, problems), "pipeline", problems)
    _check_tasks(steps, tasks, problems)
    for pipeline in pipelines.values():
        pipeline.check_references(steps, tasks, problems)
    config = Config(
        steps=_frozen(steps),
        tasks=_frozen(tasks),
        pipelines=_frozen(pipelines),
        warnings=tuple(p for p in problems.sorted() if p.level == "warning"),
        filename=filename,
    )
    return config, problems


def _add(items: dict[str, Any], item: Any, kind: str, problems: Problems) -> None:
    if item is None:
        return
    if item.name in items:
        problems.error(
            item.line,
            f"{kind} {quoted(item.name)} is defined more than once (first at line {items[item.name].line})",
        )
        return
    items[item.name] = item


def _check_tasks(steps: Mapping[str, Step], tasks: Mapping[str, Task], problems: Problems) -> None:
    for task in tasks.values():
        prefix = f"task {quoted(task.name)}: "
        step = steps.get(task.step)
        if step is None:
            known = ", ".join(steps) or "(none)"
            problems.error(
                task.step_line,
                f"{prefix}step {quoted(task.step)} does not exist; known steps: {known}",
            )
            continue
        by_name = {p.name: p for p in step.parameters}
        for variant in task.parameters:
            if variant.name not in by_name:
                known = ", ".join(by_name) or "(none)"
                problems.error(
                    variant.line,
                    f"{prefix}parameter {quoted(variant.name)} does not exist in step {quoted(step.name)}; known parameters: {known}",
                )
            elif variant.style in ("single", "multiple"):
                for value in variant.values():
                    try:
                        by_name[variant.name].validate(
                            [value] if by_name[variant.name].multiple != "none" else value
                        )
                    except ParameterValueError as exc:
                        problems.error(variant.line, f"{prefix}{exc}")
        for number, parameter_set in enumerate(task.parameter_sets, start=1):
            for name in parameter_set:
                if name not in by_name:
                    problems.error(
                        task.line,
                        f"{prefix}parameter-sets item {number}: parameter {quoted(name)} does not exist in step {quoted(step.name)}",
                    )


def parse_config(text: str, filename: str = "valohai.yaml") -> Config:
    """Parse valohai.yaml text; raise :class:`ConfigError` listing every error, one per line.

    Warnings do not raise; they are kept in :attr:`Config.warnings`.
    """
    config, problems = _parse(text, filename)
    problems.raise_if_errors()
    assert config is not None
    return config


def read_text(path: str | os.PathLike[str], problems: Problems) -> str | None:
    """Read a file as UTF-8 text, recording why it cannot be read (missing, too large, not UTF-8)."""
    try:
        with open(path, "rb") as stream:
            raw = stream.read(MAX_BYTES + 1)
    except FileNotFoundError:
        problems.error(None, "file not found")
        return None
    except IsADirectoryError:
        problems.error(None, "is a directory, not a file")
        return None
    except OSError as exc:
        problems.error(None, f"cannot read the file: {exc.strerror or exc}")
        return None
    if len(raw) > MAX_BYTES:
        problems.error(None, f"file is too large (more than {MAX_BYTES} bytes)")
        return None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        problems.error(
            line, f"the file is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        )
        return None


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and parse a valohai.yaml file; :class:`ConfigError` if it is missing or invalid."""
    filename = os.fspath(path)
    problems = Problems(filename)
    text = read_text(path, problems)
    if text is None:
        problems.raise_if_errors()
    assert text is not None
    return parse_config(text, filename)


__all__ = ["Config", "load_config", "parse_config", "read_text"]
