"""Pipeline nodes (execution, task, deployment) and their actions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sweeper.config.expressions import Expression, ExpressionError, parse_expression
from sweeper.config.fields import Fields, label_of, plain
from sweeper.config.input import EDGE_MERGE_MODES
from sweeper.config.loader import YamlMap
from sweeper.config.problems import Problems, quoted

NODE_TYPES = ("execution", "task", "deployment")
ON_ERROR = ("stop-all", "stop-next", "continue", "retry")
#: ``when`` values Valohai acts on; others are accepted with a warning.
WELL_KNOWN_WHENS = ("node-starting", "node-complete", "node-error")
#: ``then`` values Valohai acts on; others are accepted with a warning.
WELL_KNOWN_THENS = ("noop", "stop-pipeline", "error-pipeline", "require-approval")
#: Step fields a node may override.
OVERRIDABLE = (
    "image",
    "command",
    "parameters",
    "inputs",
    "mounts",
    "environment",
    "environment-variables",
    "runtime-config-preset",
    "autorestart",
)
_NODE_KEYS = {
    "execution": (
        "name",
        "type",
        "step",
        "on-error",
        "actions",
        "override",
        "edge-merge-mode",
        "commit",
    ),
    "task": (
        "name",
        "type",
        "step",
        "task",
        "on-error",
        "actions",
        "override",
        "edge-merge-mode",
        "commit",
    ),
    "deployment": ("name", "type", "deployment", "endpoints", "aliases", "on-error", "actions"),
}


def _string_or_list(f: Fields, key: str) -> tuple[str, ...]:
    return f.string_list(key, allow_single=True)


@dataclass(frozen=True, kw_only=True)
class Action:
    """What a node does ``when`` something happens, ``if_`` all its conditions hold: ``then``.

    ``when``: ``node-starting``, ``node-complete`` or ``node-error``; ``then``: e.g.
    ``stop-pipeline`` or ``require-approval``. ``if_`` holds parsed expressions (all must hold).
    """

    when: tuple[str, ...]
    if_: tuple[Expression, ...] = ()
    then: tuple[str, ...] = ()
    line: int | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, data: YamlMap, problems: Problems, prefix: str) -> Action | None:
        """Parse one item of a node's ``actions``."""
        f = Fields(data, problems, prefix=f"{prefix}action: ", allowed=("when", "if", "then"))
        has_when, has_then = f.require("when"), f.require("then")
        when = tuple(sorted({w.strip().lower() for w in _string_or_list(f, "when")}))
        then = tuple(t.strip().lower() for t in _string_or_list(f, "then"))
        conditions: list[Expression] = []
        for text in _string_or_list(f, "if"):
            try:
                conditions.append(parse_expression(text))
            except ExpressionError as exc:
                # Valohai does not check conditions when it reads the file; sweeper must
                # evaluate them, so it refuses to run the pipeline.
                problems.warning(
                    f.line_of("if"),
                    f"{f.prefix}if {quoted(text)} is not a valid expression: {exc}",
                    blocks_run=True,
                )
        for value in when:
            if value not in WELL_KNOWN_WHENS:
                f.warning(
                    "when",
                    f"when {quoted(value)} is not one of {', '.join(WELL_KNOWN_WHENS)}; the action may never run",
                )
        for value in then:
            if value not in WELL_KNOWN_THENS:
                f.warning(
                    "then",
                    f"then {quoted(value)} is not one of {', '.join(WELL_KNOWN_THENS)}; the action may do nothing",
                )
        if not (has_when and has_then):
            return None
        return cls(when=when, if_=tuple(conditions), then=then, line=f.line)

    def serialize(self) -> dict[str, Any]:
        """This action as valohai.yaml data."""
        data: dict[str, Any] = {"when": list(self.when) if len(self.when) != 1 else self.when[0]}
        if self.if_:
            data["if"] = [c.text for c in self.if_] if len(self.if_) != 1 else self.if_[0].text
        data["then"] = list(self.then) if len(self.then) != 1 else self.then[0]
        return data


@dataclass(frozen=True, kw_only=True)
class Node:
    """A pipeline node: an ``execution`` of a step, a ``task`` (of a step or a task blueprint
    named by ``task``) or a ``deployment``.

    ``override`` holds step fields replaced for this node, as plain valohai.yaml data
    (e.g. ``{"parameters": [{"name": "lr", "default": 0.1}]}``).
    """

    name: str
    type: str
    step: str | None = None
    task: str | None = None
    deployment: str | None = None
    override: dict[str, Any] = field(default_factory=dict)
    on_error: str = "stop-all"
    actions: tuple[Action, ...] = ()
    edge_merge_mode: str = "replace"
    commit: str | None = None
    endpoints: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    line: int | None = field(default=None, compare=False, repr=False)

    def __hash__(self) -> int:
        return hash((self.name, self.type, self.step, self.task))

    @classmethod
    def parse(cls, data: YamlMap, problems: Problems) -> Node | None:
        """Parse one item of a pipeline's ``nodes``."""
        prefix = f"node {label_of(data)}: "
        type_ = _parse_type(data, problems, prefix)
        if type_ is None:
            return None
        f = Fields(data, problems, prefix=prefix, allowed=_NODE_KEYS[type_])
        name = f.name()
        step, task, deployment = _parse_target(f, type_)
        on_error = f.choice("on-error", ON_ERROR, "stop-all")
        if on_error == "retry" and type_ == "deployment":
            f.error("on-error", "on-error retry is only available for execution nodes")
        elif on_error == "retry" and type_ == "task":
            problems.warning(
                f.line_of("on-error"),
                f"{prefix}on-error retry of a task node is not supported by sweeper",
                blocks_run=True,
            )
        actions = tuple(
            a
            for _, item in f.items("actions")
            if (a := Action.parse(item, problems, prefix)) is not None
        )
        override = _parse_override(f, problems, prefix) if type_ != "deployment" else {}
        node = cls(
            name=name or "",
            type=type_,
            step=step,
            task=task,
            deployment=deployment,
            override=override,
            on_error=on_error,
            actions=actions,
            edge_merge_mode=f.choice("edge-merge-mode", EDGE_MERGE_MODES, "replace"),
            commit=f.string("commit"),
            endpoints=f.string_list("endpoints") if type_ == "deployment" else (),
            aliases=f.string_list("aliases") if type_ == "deployment" else (),
            line=f.line,
        )
        return node if name is not None else None

    def serialize(self) -> dict[str, Any]:
        """This node as valohai.yaml data (defaults left out)."""
        data: dict[str, Any] = {"name": self.name, "type": self.type}
        for key, value in (
            ("step", self.step),
            ("task", self.task),
            ("deployment", self.deployment),
        ):
            if value is not None:
                data[key] = value
        if self.endpoints:
            data["endpoints"] = list(self.endpoints)
        if self.aliases:
            data["aliases"] = list(self.aliases)
        if self.override:
            data["override"] = self.override
        if self.on_error != "stop-all":
            data["on-error"] = self.on_error
        if self.actions:
            data["actions"] = [a.serialize() for a in self.actions]
        if self.edge_merge_mode != "replace":
            data["edge-merge-mode"] = self.edge_merge_mode
        if self.commit is not None:
            data["commit"] = self.commit
        return data


def _parse_type(data: YamlMap, problems: Problems, prefix: str) -> str | None:
    """The node's type, or ``None`` (reported): without it no other key can be checked."""
    raw_type = data.get("type")
    if raw_type is None:
        problems.error(
            data.line, f'{prefix}missing required key "type" (execution, task or deployment)'
        )
        return None
    if not isinstance(raw_type, str) or raw_type.strip().lower() not in NODE_TYPES:
        problems.error(
            data.line_of("type"),
            f"{prefix}type {quoted(raw_type)} is not one of: {', '.join(NODE_TYPES)}",
        )
        return None
    return raw_type.strip().lower()


def _parse_target(f: Fields, type_: str) -> tuple[str | None, str | None, str | None]:
    """What the node runs: ``(step, task, deployment)``, as its type allows."""
    if type_ == "execution":
        return f.name("step"), None, None
    if type_ == "deployment":
        return None, None, f.name("deployment")
    step = f.string("step")
    task = f.string("task")
    if step is None and task is None:
        f.error(None, 'a task node needs "step" or "task"')
    elif step is not None and task is not None:
        f.error("task", 'a task node takes "step" or "task", not both')
        task = None  # one error is enough
    return step, task, None


def _parse_override(f: Fields, problems: Problems, prefix: str) -> dict[str, Any]:
    """Check the shape of a node's ``override`` and return it as plain data.

    Its parameters, inputs and environment variables are checked later, merged into the
    node's step (:meth:`sweeper.config.Step.with_override`): alone they are fragments
    (``{name: lr, default: [1, 2]}`` is valid for a ``multiple`` step parameter).
    """
    raw = f.mapping("override")
    if raw is None:
        return {}
    o = Fields(raw, problems, prefix=f"{prefix}override: ", allowed=OVERRIDABLE)
    o.string("image")
    o.string("environment")
    o.string("runtime-config-preset")
    o.boolean("autorestart", False)
    if "command" in o and not isinstance(raw["command"], str):
        o.string_list("command")
    for key in ("parameters", "inputs", "environment-variables"):
        for line, item in o.items(key):
            if not isinstance(item.get("name"), str):
                problems.error(line, f'{prefix}override: {key}: each item needs a "name"')
    o.sequence("mounts")
    return {k: plain(v) for k, v in raw.items() if k in OVERRIDABLE}


__all__ = ["Action", "NODE_TYPES", "Node", "ON_ERROR", "OVERRIDABLE"]
