"""The benchmark cases, by name, in the order they run."""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.cases import (
    cli,
    containers,
    forecast,
    overhead,
    parallel,
    quality,
    reproducible,
    scale,
    serve,
    store,
    wide,
)
from benchmarks.cases.base import CaseResult, Settings

CASES: dict[str, Callable[[Settings], CaseResult]] = {
    "overhead": overhead.run,
    "containers": containers.run,
    "parallel": parallel.run,
    "scale": scale.run,
    "quality": quality.run,
    "store": store.run,
    "cli": cli.run,
    "reproducible": reproducible.run,
    "serve": serve.run,
    "wide": wide.run,
    "forecast": forecast.run,
}
