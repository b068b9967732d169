"""Package attributes imported on first use, so that a light command never loads Ray or pandas.

A package ``__init__`` re-exports its public names for users (``from sweeper.sweep import
run_plan``) but must not import the heavy libraries behind them at import time: ``sweep
lint`` would pay for Ray, Optuna and the Docker SDK. Each such ``__init__`` names where every
attribute lives and imports the same names under ``TYPE_CHECKING`` for type checkers::

    __getattr__ = lazy_attributes(__name__, {"run_plan": "sweeper.sweep.engine"})
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) that imports ``name`` from ``where[name]`` on first use."""
    table = dict(where)

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # later lookups skip this function
        return value

    return __getattr__
