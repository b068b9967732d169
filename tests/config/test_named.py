"""One item per name in every valohai.yaml list, and what each list says of a repetition."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from sweeper.config import parse_config
from sweeper.config.lint import lint_text
from sweeper.config.named import get_by_name, unique_by_name
from sweeper.errors import ConfigError


@dataclass(frozen=True)
class Item:
    name: str
    line: int | None
    value: int = 0


ITEMS = [Item("a", 1, 1), Item("b", 2, 2), Item("a", 3, 3), Item("a", 4, 4)]


@pytest.mark.parametrize(
    ("keep", "kept", "told"),
    [
        ("last", [Item("a", 4, 4), Item("b", 2, 2)], [(3, 1), (4, 3)]),
        ("first", [Item("a", 1, 1), Item("b", 2, 2)], [(3, 1), (4, 1)]),
    ],
)
def test_one_item_per_name_in_the_first_ones_place(
    keep: Literal["first", "last"], kept: list[Item], told: list[tuple[int, int]]
) -> None:
    repeats: list[tuple[int | None, int | None]] = []
    found = unique_by_name(
        ITEMS,
        lambda item, first: repeats.append((item.line, first.line)),
        keep=keep,
    )
    assert list(found) == kept
    # each repetition is told against the item of its name kept so far ("first at line N")
    assert repeats == told


def test_get_by_name_names_the_known_ones() -> None:
    assert get_by_name(ITEMS, "b", lambda known: known) == Item("b", 2, 2)
    with pytest.raises(ConfigError, match=r"^no c; known: a, b, a, a$"):
        get_by_name(ITEMS, "c", lambda known: f"no c; known: {known}")


STEP = """
- step:
    name: train
    image: python:3.12
    command: python train.py
    parameters:
      - name: lr
        type: float
        default: 0.1
      - name: lr
        type: float
        default: 0.2
- task:
    name: search
    step: train
    type: grid_search
    parameters:
      - name: lr
        style: multiple
        rules: {items: [0.1, 0.2]}
      - name: lr
        style: single
        rules: {value: 0.3}
"""


def test_a_step_keeps_its_last_parameter_and_a_task_its_first_variant() -> None:
    config = parse_config(STEP)
    assert config.get_step("train").get_parameter("lr").default == 0.2
    assert config.get_task("search").get_parameter("lr").style == "multiple"
    assert [str(p) for p in lint_text(STEP)] == [
        'valohai.yaml:10: warning: parameter "lr" is defined more than once (first at line 7); '
        "the last definition is used",
        'valohai.yaml:21: warning: task "search": parameter "lr" is varied more than once '
        "(first at line 18); the first is used",
    ]
