"""Stop conditions: sweeper refuses exactly the ones Valohai refuses (valohai-yaml is the oracle)."""

from __future__ import annotations

import random

import pytest
from valohai_yaml.lint import LintResult
from valohai_yaml.utils.lint import lint_expression

from sweeper.config import lint_text, parse_config
from sweeper.config.valohai_expressions import valohai_refuses
from sweeper.errors import ConfigError

ATOMS = ["metadata.x", "x", "1", "2.5", "'a'", "None", "True", "metadata.class", "f(x)"]
ATOMS += ["f(x, 1)", "a.b.c", "(1, 2)", "{1}", "x[0]", "f(a=1)", "[1]", "g(x)(1)"]
OPERATORS = [" < ", " == ", " + ", " ** ", " and ", " or ", " in ", " not in ", " is ", " % "]


def oracle_accepts(text: str) -> bool:
    """Whether valohai-yaml's check of a stop condition passes ``text``."""
    result = LintResult()
    step = type("Step", (), {"name": "s"})
    lint_expression(result, {"object_type": "step", "step": step}, "stop-condition", text)
    return result.error_count == 0


def random_expressions(count: int) -> list[str]:
    rng = random.Random(7)
    found = []
    for _ in range(count):
        text = rng.choice(ATOMS)
        for _ in range(rng.randint(0, 3)):
            text = text + rng.choice(OPERATORS) + rng.choice(ATOMS)
            if rng.random() < 0.3:
                text = ("not " if rng.random() < 0.3 else "") + f"({text})"
        found.append(text)
    deep = [op.join(["x"] * k) for k in range(1, 12) for op in (" + ", " and ")]
    return found + deep + ["not " * k + "x" for k in range(1, 12)]


def test_the_same_verdict_as_valohai_on_random_expressions() -> None:
    differ = [
        t for t in random_expressions(1500) if oracle_accepts(t) != (valohai_refuses(t) is None)
    ]
    assert differ == []


@pytest.mark.parametrize(
    ("condition", "level"),
    [
        ("metadata.accuracy > 0.9", None),
        ("abs(metadata.loss) < 0.01", "warning"),  # Valohai's, sweeper cannot evaluate it
        ("0.5 < metadata.accuracy < 0.9", "error"),  # Valohai refuses chained comparisons
        ("metadata['x'] > 1", "error"),
    ],
)
def test_stop_condition_verdicts(condition: str, level: str | None) -> None:
    text = f"- step: {{name: s, image: x, command: y, stop-condition: {condition!r}}}\n"
    config_problems = lint_text(text)
    assert [p.level for p in config_problems] == ([level] if level else [])
    if level == "warning":
        assert config_problems[0].blocks_run
        with pytest.raises(ConfigError, match="sweeper cannot evaluate it"):
            parse_config(text).get_step("s")
