"""The search space of a sweep, from the CLI, a valohai.yaml task or the step itself.

Precedence: ``-p`` specs on the command line, then a ``--task`` block, then the step's own
parameters. CLI syntax (``sweep --help`` repeats it):

=========================  ==========================================================
``-p lr=log:1e-5..1e-1``   float range sampled on a log scale
``-p dropout=0.1..0.5``    float range (also ``float:0.1..0.5``; ``float:0..1:0.1`` steps)
``-p layers=int:1..4``     integer range (``logint:8..512`` on a log scale)
``-p act=relu,tanh``       categorical (values typed by the step parameter)
``-p epochs=5``            fixed value
=========================  ==========================================================

Step parameters: float/integer with both ``min`` and ``max`` become ranges (log scale when
``min > 0`` and ``max / min >= 100``), ``choices`` and flags become categorical, the rest
stay at their defaults.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from sweeper.config import Step, Task
from sweeper.errors import SweeperError

_RANGE = re.compile(
    r"^(?:(?P<kind>log|float|int|logint):)?(?P<low>[^.:][^:]*?)\.\.(?P<high>[^:]+?)(?::(?P<step>[^:]+))?$"
)


def admits(distribution: BaseDistribution, value: Any) -> bool:
    """Whether ``value`` (as a trial's parameter holds it) lies in ``distribution``.

    What a warm start and the adoption of records into a study ask of each recorded value;
    from the distributions' public fields (Optuna's own check is private).

    >>> admits(FloatDistribution(0.0, 1.0, step=0.25), 0.5), admits(IntDistribution(1, 4), 5)
    (True, False)
    >>> admits(CategoricalDistribution(["relu", "tanh"]), "gelu")
    False
    """
    try:  # what the distribution takes (float-castable, a known choice): else ValueError
        internal = distribution.to_internal_repr(value)
    except (TypeError, ValueError):
        return False
    if isinstance(distribution, CategoricalDistribution):
        return True
    if isinstance(distribution, (FloatDistribution, IntDistribution)):
        low, high, step = distribution.low, distribution.high, distribution.step
        if not low <= internal <= high:
            return False
        if isinstance(distribution, IntDistribution):
            return (internal - low) % distribution.step == 0
        if step is None:
            return True
        steps = (internal - low) / step
        return abs(steps - round(steps)) < 1e-8
    return False


@dataclass
class SearchSpace:
    """Distributions to sample, fixed values, optional grid and parameter sets to enqueue."""

    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] | None = None
    parameter_sets: list[dict[str, Any]] = field(default_factory=list)
    source: str = "step"

    @property
    def grid_size(self) -> int | None:
        """Number of points of a grid space, else None."""
        if self.grid is None:
            return None
        size = 1
        for values in self.grid.values():
            size *= len(values)
        return size

    def describe(self) -> list[tuple[str, str]]:
        """(name, human description) rows for printing the resolved space."""
        rows: list[tuple[str, str]] = []
        for name, dist in self.distributions.items():
            rows.append((name, describe_distribution(dist)))
        if self.grid:
            for name, values in self.grid.items():
                rows.append((name, "grid " + ", ".join(map(str, values))))
        for name, value in self.fixed.items():
            rows.append((name, f"fixed {value!r}"))
        if self.parameter_sets:
            rows.append(("(parameter sets)", f"{len(self.parameter_sets)} sets, run in order"))
        return rows

    def to_json(self) -> str:
        """The space as JSON (recorded with the sweep)."""
        from optuna.distributions import distribution_to_json

        return json.dumps(
            {
                "source": self.source,
                "distributions": {
                    k: json.loads(distribution_to_json(v)) for k, v in self.distributions.items()
                },
                "fixed": self.fixed,
                "grid": self.grid,
                "parameter_sets": self.parameter_sets,
            },
            default=str,
        )


def describe_distribution(dist: BaseDistribution) -> str:
    """A short human description of an Optuna distribution."""
    if isinstance(dist, FloatDistribution):
        scale = "log " if dist.log else ""
        step = f" step {dist.step:g}" if dist.step else ""
        return f"{scale}float {dist.low:g}..{dist.high:g}{step}"
    if isinstance(dist, IntDistribution):
        scale = "log " if dist.log else ""
        return f"{scale}int {dist.low}..{dist.high}"
    if isinstance(dist, CategoricalDistribution):
        return "one of " + ", ".join(map(str, dist.choices))
    return repr(dist)


def _parameter(step: Step, name: str) -> Any:
    for parameter in step.parameters:
        if parameter.name == name:
            return parameter
    known = ", ".join(p.name for p in step.parameters) or "none"
    raise SweeperError(f'step "{step.name}" has no parameter "{name}" (its parameters: {known})')


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise SweeperError(f'{what}: "{text}" is not a number') from None


def parse_cli_spec(step: Step, name: str, text: str) -> BaseDistribution | Any:
    """Parse one ``-p NAME=SPEC``: a distribution, or a fixed typed value."""
    parameter = _parameter(step, name)
    what = f"-p {name}={text}"
    match = _RANGE.match(text.strip())
    if match and parameter.type in ("integer", "float"):
        kind = match["kind"] or ("int" if parameter.type == "integer" else "float")
        low = _number(match["low"], what)
        high = _number(match["high"], what)
        if low >= high:
            raise SweeperError(f"{what}: the low end {low:g} must be below the high end {high:g}")
        if kind in ("int", "logint"):
            if low != int(low) or high != int(high):
                raise SweeperError(f"{what}: an integer range needs whole numbers")
            step_size = int(_number(match["step"], what)) if match["step"] else 1
            if kind == "logint" and low <= 0:
                raise SweeperError(f"{what}: a log range needs a positive low end")
            return IntDistribution(int(low), int(high), log=kind == "logint", step=step_size)
        if kind == "log" and low <= 0:
            raise SweeperError(f"{what}: a log range needs a positive low end")
        step_value = _number(match["step"], what) if match["step"] else None
        return FloatDistribution(low, high, log=kind == "log", step=step_value)
    if "," in text and parameter.multiple in (None, "none"):
        choices = [parameter.parse_value(part.strip()) for part in text.split(",") if part.strip()]
        if len(choices) < 2:
            raise SweeperError(f"{what}: a categorical space needs at least two values")
        return CategoricalDistribution(choices)
    return parameter.parse_value(text)


def space_from_step(step: Step) -> SearchSpace:
    """The default space: ranges and choices the step declares; the rest at defaults."""
    space = SearchSpace(source="step")
    for parameter in step.parameters:
        if parameter.choices:
            space.distributions[parameter.name] = CategoricalDistribution(list(parameter.choices))
        elif parameter.type == "flag":
            space.distributions[parameter.name] = CategoricalDistribution([True, False])
        elif (
            parameter.type in ("integer", "float")
            and parameter.min is not None
            and parameter.max is not None
            and parameter.min < parameter.max
        ):
            low, high = parameter.min, parameter.max
            log = low > 0 and high / low >= 100
            if parameter.type == "integer":
                space.distributions[parameter.name] = IntDistribution(int(low), int(high), log=log)
            else:
                space.distributions[parameter.name] = FloatDistribution(
                    float(low), float(high), log=log
                )
        elif parameter.default is not None:
            space.fixed[parameter.name] = parameter.default
    return space


def space_from_task(step: Step, task: Task) -> SearchSpace:
    """A valohai.yaml task block: grid, random/Bayesian ranges or manual parameter sets."""
    space = SearchSpace(source=f"task {task.name}")
    kind = task.type
    if task.parameter_sets:
        space.parameter_sets = [
            {name: _parameter(step, name).validate(value) for name, value in s.items()}
            for s in task.parameter_sets
        ]
        # Optuna puts an enqueued value into a trial only for a parameter it is asked to
        # suggest: each name of the sets is a choice among the values the sets give it.
        for name in dict.fromkeys(n for s in space.parameter_sets for n in s):
            values = [s[name] for s in space.parameter_sets if name in s]
            if any(isinstance(v, (list, dict)) for v in values):
                raise SweeperError(
                    f'task "{task.name}": parameter-sets give "{name}" several values in '
                    "one set; a sweep takes one value per parameter"
                )
            space.distributions[name] = CategoricalDistribution(list(dict.fromkeys(values)))
    for variant in task.parameters:
        parameter = _parameter(step, variant.name)
        style = variant.style
        if kind in ("random_search", "bayesian_tpe") and style == "random":
            search = variant.search_range()
            low, high, log = search.low, search.high, search.log
            if parameter.type == "integer" or search.integer:
                space.distributions[variant.name] = IntDistribution(int(low), int(high), log=log)
            else:
                space.distributions[variant.name] = FloatDistribution(
                    float(low), float(high), log=log
                )
            continue
        values = [parameter.validate(v) for v in variant.values()]
        if len(values) == 1:
            space.fixed[variant.name] = values[0]
        elif kind == "grid_search":
            space.grid = space.grid or {}
            space.grid[variant.name] = values
        else:
            space.distributions[variant.name] = CategoricalDistribution(values)
    for parameter in step.parameters:
        known = (
            parameter.name in space.distributions
            or parameter.name in space.fixed
            or (space.grid and parameter.name in space.grid)
        )
        # A flag's default is not a value (valohai-yaml): an unset flag is not passed.
        if not known and parameter.default is not None and parameter.type != "flag":
            space.fixed[parameter.name] = parameter.default
    return space


def resolve_space(
    step: Step, cli_specs: Mapping[str, Sequence[str]], task: Task | None = None
) -> SearchSpace:
    """Apply the precedence: CLI specs over the task block over the step's own parameters."""
    space = space_from_task(step, task) if task is not None else space_from_step(step)
    for name, texts in cli_specs.items():
        parameter = _parameter(step, name)
        if len(texts) > 1 or parameter.multiple not in (None, "none"):
            value: Any = (
                [parameter.parse_value(t) for t in texts]
                if parameter.multiple not in (None, "none")
                else None
            )
            if value is None:
                raise SweeperError(f"-p {name} is given {len(texts)} times; give it once")
            result: Any = value
        else:
            result = parse_cli_spec(step, name, texts[0])
        space.distributions.pop(name, None)
        space.fixed.pop(name, None)
        if space.grid:
            space.grid.pop(name, None)
        if isinstance(result, BaseDistribution):
            space.distributions[name] = result
        else:
            space.fixed[name] = result
        if space.source != "cli" and not space.source.startswith("cli"):
            space.source = "cli + " + space.source
    return space
