"""How one execution's commands run: a local process group or a Docker container.

Every runtime implements :class:`Runtime`: ``run(request, on_output, stop) -> RunResult``.
:data:`RUNTIMES` is the one place that names them; a new runtime is its own module plus one
line there, and the CLI's ``--runtime`` choices, :func:`get_runtime` and the lazy re-exports
below all follow from it.

>>> runtime = get_runtime("local")
>>> runtime.name
'local'
>>> runtime_names()
['docker', 'local']
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from sweeper._lazy import lazy_attributes
from sweeper.errors import SweeperError
from sweeper.runtime.base import RunRequest, RunResult, Runtime

if TYPE_CHECKING:
    from sweeper.runtime.docker import DockerRuntime
    from sweeper.runtime.local import LocalRuntime

__all__ = [
    "DEFAULT_RUNTIME",
    "RUNTIMES",
    "DockerRuntime",
    "LocalRuntime",
    "RunRequest",
    "RunResult",
    "Runtime",
    "get_runtime",
    "runtime_class",
    "runtime_names",
]

#: Runtime classes by name, as ``module:Class``, imported only when that runtime is used (the
#: Docker SDK and requests under it cost ~50 ms that ``sweep lint`` must not pay).
RUNTIMES: dict[str, str] = {
    "local": "sweeper.runtime.local:LocalRuntime",
    "docker": "sweeper.runtime.docker:DockerRuntime",
}

#: Valohai's model: each step runs in its image (the CLI's SWEEPER_RUNTIME overrides it).
DEFAULT_RUNTIME = "docker"

# `from sweeper.runtime import DockerRuntime` works for every class in the table, on first use.
__getattr__ = lazy_attributes(
    __name__, {path.split(":")[1]: path.split(":")[0] for path in RUNTIMES.values()}
)


def runtime_names() -> list[str]:
    """The names :func:`get_runtime` accepts, sorted."""
    return sorted(RUNTIMES)


def runtime_class(name: str) -> type[Runtime]:
    """The :class:`Runtime` subclass registered as ``name`` (its module is imported now).

    Raises :class:`~sweeper.errors.SweeperError` naming the choices for an unknown name.
    """
    path = RUNTIMES.get(name)
    if path is None:
        raise SweeperError(f"unknown runtime {name!r}: use one of {', '.join(runtime_names())}")
    module_name, class_name = path.split(":")
    cls: type[Runtime] = getattr(importlib.import_module(module_name), class_name)
    return cls


def get_runtime(name: str) -> Runtime:
    """A new runtime by name (see :data:`RUNTIMES`) with default options.

    Creating a Docker runtime does not contact the daemon; its first run or image lookup
    does, and raises :class:`~sweeper.errors.RuntimeUnavailableError` if it is unreachable.
    """
    return runtime_class(name)()
