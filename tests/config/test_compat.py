"""Differential test against valohai-yaml, the official parser: same verdict, same commands.

Each file in tests/config/compat/ (one or more per class of difference once found, see the
comment at the top of each) and the bundled example project goes through both
``sweeper.config`` and ``valohai_yaml``. They must agree on accept/reject, and for every
step the oracle can read, on the command for random parameter values, token for token
(``shlex.split``). The figures are printed at the end of the run (``compat: files A/B,
renders X/Y``; see conftest.py).
"""

from __future__ import annotations

import random
import shlex
import string
from pathlib import Path
from typing import Any

import pytest
import valohai_yaml
from valohai_yaml.lint import lint as oracle_lint

from sweeper.config import Parameter, lint_text, parse_config

from .conftest import COMPAT

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted((Path(__file__).parent / "compat").glob("*.yaml")) + [
    ROOT / "configs" / "valohai.yaml"
]
#: Random value sets tried per step.
DRAWS = 40
_TEXT = string.ascii_letters + string.digits + " -_.,;'\"$*{}=/\\"


def oracle_verdict(text: str) -> bool:
    """Whether valohai-yaml accepts ``text`` (schema and lint errors, or a crash, reject)."""
    try:
        return oracle_lint(text, ansi_colors=False).error_count == 0
    except Exception:  # the oracle raising while parsing is its way of refusing
        return False


def sweeper_verdict(text: str, filename: str) -> bool:
    """Whether ``sweep lint`` accepts ``text`` (warnings allowed)."""
    return not any(p.level == "error" for p in lint_text(text, filename))


def _atom(parameter: Parameter, rng: random.Random) -> Any:
    if parameter.choices and rng.random() < 0.5:
        return rng.choice(parameter.choices)
    if parameter.type == "integer":
        return rng.randint(-5, 10_000)
    if parameter.type == "float":
        return rng.choice([rng.uniform(-1, 1), 10 ** rng.uniform(-8, 8), float(rng.randint(0, 9))])
    return "".join(rng.choice(_TEXT) for _ in range(rng.randint(0, 12)))


def random_values(parameters: tuple[Parameter, ...], rng: random.Random) -> dict[str, Any]:
    """Values for a random subset of ``parameters`` (some ``None``, lists for multiple)."""
    values: dict[str, Any] = {}
    for parameter in parameters:
        roll = rng.random()
        if roll < 0.3:
            continue
        if roll < 0.35:
            values[parameter.name] = None
        elif parameter.type == "flag":
            values[parameter.name] = rng.random() < 0.5
        elif parameter.multiple != "none":
            values[parameter.name] = [_atom(parameter, rng) for _ in range(rng.randint(0, 3))]
        else:
            values[parameter.name] = _atom(parameter, rng)
    return values


def tokens(lines: list[str]) -> list[Any]:
    """Each command line as shell tokens (the line itself if it does not split)."""
    out: list[Any] = []
    for line in lines:
        try:
            out.append(shlex.split(line))
        except ValueError:
            out.append(line)
    return out


def render(build: Any, values: dict[str, Any]) -> list[Any] | str:
    """A render as tokens, or the name of the kind of error it raised."""
    try:
        return tokens(build(values))
    except Exception:  # both failing to render (each with its own error) is agreement too
        return "fails"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_same_verdict_and_commands_as_valohai_yaml(path: Path) -> None:
    text = path.read_text()
    verdicts = (oracle_verdict(text), sweeper_verdict(text, path.name))
    COMPAT["files"][1] += 1
    COMPAT["files"][0] += verdicts[0] == verdicts[1]
    assert verdicts[0] == verdicts[1], (
        f"valohai-yaml accepts: {verdicts[0]}, sweeper: {verdicts[1]}"
    )
    try:
        oracle = valohai_yaml.parse(text, validate=False)
    except Exception:  # a file valohai-yaml cannot even read has no steps to render
        assert not verdicts[0]
        return
    # Lenient, as `sweep run` reads a file: an item with errors is set aside, the rest runs.
    ours = parse_config(text, path.name, strict=False)
    rng = random.Random(path.name)
    mismatches = []
    for name, step in oracle.steps.items():
        if verdicts[0]:
            assert name in ours.steps, f"step {name} missing from sweeper's reading"
        if name not in ours.steps:
            continue
        mine = ours.steps[name]  # (get_step refuses a step whose stop-condition sweeper cannot run)
        assert list(step.parameters) == [p.name for p in mine.parameters]
        draws = [{}] + [random_values(mine.parameters, rng) for _ in range(DRAWS)]
        for values in draws:
            expected = render(step.build_command, values)
            got = render(mine.build_command, values)
            COMPAT["renders"][1] += 1
            COMPAT["renders"][0] += expected == got
            if expected != got:
                mismatches.append((name, values, expected, got))
    assert not mismatches, mismatches[:3]
