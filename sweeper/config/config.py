"""The whole valohai.yaml: steps, tasks and pipelines, read from text or a file."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from sweeper.config.endpoint import check_deployment, check_endpoint
from sweeper.config.fields import has_control_characters
from sweeper.config.loader import MAX_BYTES, YamlList, YamlMap, load_yaml
from sweeper.config.named import add_by_name, last_wins
from sweeper.config.pipeline import Pipeline
from sweeper.config.problems import Problem, Problems, listed, quoted
from sweeper.config.step import Step
from sweeper.config.task import Task
from sweeper.errors import ConfigError, ParameterValueError

#: The kinds in the order valohai-yaml looks for them in an item.
KINDS = ("step", "task", "endpoint", "pipeline", "blueprint", "deployment")


def _frozen(items: dict[Any, Any]) -> Mapping[Any, Any]:
    return MappingProxyType(items)


@dataclass(frozen=True, kw_only=True)
class Config:
    """A parsed valohai.yaml: ordered, read-only mappings of steps, tasks and pipelines by name.

    ``warnings`` holds the non-fatal problems found while reading it. ``broken`` holds, by
    ``(kind, name)``, the errors of items left out because they cannot be used (only when
    parsed with ``strict=False``); ``blocked`` the warnings of items Valohai accepts but
    sweeper cannot run. Asking for a broken item (``get_step``...), or a blocked step or
    task, raises them; a blocked pipeline is refused by ``PipelineGraph.build``.
    """

    steps: Mapping[str, Step] = field(default_factory=lambda: _frozen({}))
    tasks: Mapping[str, Task] = field(default_factory=lambda: _frozen({}))
    pipelines: Mapping[str, Pipeline] = field(default_factory=lambda: _frozen({}))
    warnings: tuple[Problem, ...] = field(default=(), compare=False)
    filename: str = field(default="valohai.yaml", compare=False)
    broken: Mapping[tuple[str, str], tuple[Problem, ...]] = field(
        default_factory=lambda: _frozen({}), compare=False
    )
    blocked: Mapping[tuple[str, str], tuple[Problem, ...]] = field(
        default_factory=lambda: _frozen({}), compare=False
    )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Config):
            return NotImplemented
        return (dict(self.steps), dict(self.tasks), dict(self.pipelines)) == (
            dict(other.steps),
            dict(other.tasks),
            dict(other.pipelines),
        )

    __hash__ = None  # type: ignore[assignment]

    def _get(self, kind: str, items: Mapping[str, Any], name: str) -> Any:
        # The same lines `sweep lint` prints: an item's errors, or (for a step or task, only
        # fetched to be run) the warnings that say why sweeper cannot run what Valohai accepts.
        blocked = self.blocked.get((kind, name)) if kind in ("step", "task") else None
        for found in (self.broken.get((kind, name)), blocked):
            if found:
                raise ConfigError("\n".join(str(p) for p in found))
        if name in items:
            return items[name]
        known = listed(items)
        raise ConfigError(f"unknown {kind} {quoted(name)}; known {kind}s: {known}")

    def get_step(self, name: str) -> Step:
        """The step called ``name``; :class:`ConfigError` naming the known steps otherwise."""
        return self._get("step", self.steps, name)  # type: ignore[no-any-return]

    def get_task(self, name: str) -> Task:
        """The task called ``name``; :class:`ConfigError` naming the known tasks otherwise,
        or listing why sweeper cannot run it (a pipeline's are checked by its graph)."""
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


def _parse(text: str, filename: str) -> tuple[Config | None, Problems, dict[Any, list[Problem]]]:
    """Parse the whole file; also return each item's own problems by ``(kind, name)``.

    Problems found while reading one item (or checking it against the others) belong to it,
    so that a broken pipeline does not stop an unrelated step from running.
    """
    problems = Problems(filename)
    owned: dict[Any, list[Problem]] = {}
    data = load_yaml(text, problems)
    if problems.errors:
        return None, problems, owned
    if data is None:
        problems.error(1, "the file is empty; expected a list of step, task and pipeline items")
        return None, problems, owned
    if not isinstance(data, YamlList):
        problems.error(
            getattr(data, "line", 1),
            'the top level must be a list of step, task and pipeline items ("- step: ...")',
        )
        return None, problems, owned
    items = _Items()
    for index, item in enumerate(data):
        found = _kind_of(item, data.line_of(index), problems)
        if found is not None:
            mark = len(problems.items)
            name = items.parse(*found, problems)
            if name is not None:
                owned[found[0], name] = problems.since(mark)
    for task in items.tasks.values():
        mark = len(problems.items)
        _check_task(items.steps, task, problems)
        owned["task", task.name] += problems.since(mark)
    for pipeline in items.pipelines.values():
        mark = len(problems.items)
        pipeline.check(items.steps, items.tasks, problems)
        owned["pipeline", pipeline.name] += problems.since(mark)
    blocked = {
        key: tuple(sorted((p for p in found if p.blocks_run), key=lambda p: p.line or 0))
        for key, found in owned.items()
        if any(p.blocks_run for p in found)
    }
    config = Config(
        steps=_frozen(items.steps),
        tasks=_frozen(items.tasks),
        pipelines=_frozen(items.pipelines),
        warnings=tuple(p for p in problems.sorted() if p.level == "warning"),
        filename=filename,
        blocked=_frozen(blocked),
    )
    return config, problems, owned


def _kind_of(item: Any, line: int, problems: Problems) -> tuple[str, YamlMap] | None:
    """A top-level item's kind (``blueprint`` read as ``pipeline``) and body, or ``None``
    (reported) when it has no kind sweeper knows or its body is not a mapping."""
    if not isinstance(item, YamlMap):
        problems.error(line, 'each top-level item must be a mapping such as "- step: ..."')
        return None
    kind = next((k for k in KINDS if k in item), None)
    if kind is None:
        # Valohai ignores such an item (with a warning), so it is not an error here either.
        labels = ", ".join(
            quoted(k) if not has_control_characters(k) else "with control characters" for k in item
        )
        close = [difflib.get_close_matches(str(k), KINDS, n=1) for k in item]
        hint = next((f' (did you mean "{c[0]}"?)' for c in close if c), "")
        problems.warning(
            line,
            f"unknown top-level item {labels or '(empty)'}{hint}; Valohai ignores it; "
            "expected one of: step, task, pipeline, endpoint, deployment",
        )
        return None
    others = [quoted(k) for k in item if k != kind]
    if others:
        problems.warning(
            line, f"the item is read as a {kind}; its other keys ({', '.join(others)}) are ignored"
        )
    body = item[kind]
    if not isinstance(body, YamlMap):
        problems.error(item.value_line(kind), f"{kind} must be a mapping")
        return None
    return ("pipeline" if kind == "blueprint" else kind), body


@dataclass
class _Items:
    """The steps, tasks and pipelines read so far, by name: a repeated name replaces the
    earlier item in its place, as in valohai-yaml."""

    steps: dict[str, Step] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    pipelines: dict[str, Pipeline] = field(default_factory=dict)

    def parse(self, kind: str, body: YamlMap, problems: Problems) -> str | None:
        """Read one item of ``kind``; the name its problems belong to, if it has one."""
        name: str | None = None
        if kind == "step" and (step := Step.parse(body, problems)) is not None:
            add_by_name(self.steps, step, last_wins(kind, problems), keep="last")
            name = step.name
        elif kind == "task" and (task := Task.parse(body, problems)) is not None:
            add_by_name(self.tasks, task, last_wins(kind, problems), keep="last")
            name = task.name
        elif kind == "pipeline" and (pipeline := Pipeline.parse(body, problems)) is not None:
            add_by_name(self.pipelines, pipeline, last_wins(kind, problems), keep="last")
            name = pipeline.name
        elif kind == "endpoint":
            name = check_endpoint(body, problems)
        elif kind == "deployment":
            name = check_deployment(body, problems)
        if name is None and isinstance(body.get("name"), str):
            name = body["name"]
        return name


def _check_task(steps: Mapping[str, Step], task: Task, problems: Problems) -> None:
    """Report what a task names but its step lacks.

    Valohai does not check a task against its step, so these are warnings that block a run.
    """
    problems = problems.blocking()
    prefix = f"task {quoted(task.name)}: "
    step = steps.get(task.step)
    if step is None:
        known = listed(steps)
        problems.error(
            task.step_line,
            f"{prefix}step {quoted(task.step)} does not exist; known steps: {known}",
        )
        return
    by_name = {p.name: p for p in step.parameters}
    for variant in task.parameters:
        if variant.name not in by_name:
            known = listed(by_name)
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


def parse_config(text: str, filename: str = "valohai.yaml", *, strict: bool = True) -> Config:
    """Parse valohai.yaml text; raise :class:`ConfigError` listing every error, one per line.

    Warnings do not raise; they are kept in :attr:`Config.warnings`. With ``strict=False``
    only errors outside any item (YAML syntax, the file's shape) raise: an item with errors
    is left out and kept in :attr:`Config.broken`, so running one step depends on that step
    alone (asking for a broken item raises its errors).
    """
    config, problems, owned = _parse(text, filename)
    if strict or config is None:
        problems.raise_if_errors()
        assert config is not None
        return config
    owned_ids = {id(p) for found in owned.values() for p in found}
    loose = Problems(filename, [p for p in problems.errors if id(p) not in owned_ids])
    loose.raise_if_errors()
    broken = {
        key: tuple(sorted((p for p in found if p.level == "error"), key=lambda p: p.line or 0))
        for key, found in owned.items()
        if any(p.level == "error" for p in found)
    }

    def usable(kind: str, items: Mapping[str, Any]) -> Mapping[str, Any]:
        return _frozen({n: item for n, item in items.items() if (kind, n) not in broken})

    return replace(
        config,
        steps=usable("step", config.steps),
        tasks=usable("task", config.tasks),
        pipelines=usable("pipeline", config.pipelines),
        broken=_frozen(broken),
    )


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


def load_config(path: str | os.PathLike[str], *, strict: bool = True) -> Config:
    """Read and parse a valohai.yaml file; :class:`ConfigError` if it is missing or invalid
    (with ``strict=False``, items with errors are set aside instead; see :func:`parse_config`)."""
    filename = os.fspath(path)
    problems = Problems(filename)
    text = read_text(path, problems)
    if text is None:
        problems.raise_if_errors()
    assert text is not None
    return parse_config(text, filename, strict=strict)


__all__ = ["Config", "load_config", "parse_config", "read_text"]
