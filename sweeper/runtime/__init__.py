"""How one execution's commands run: a local process group or a Docker container.

Both runtimes implement :class:`Runtime`: ``run(request, on_output, stop) -> RunResult``.

>>> runtime = get_runtime("local")
>>> runtime.name
'local'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from sweeper._lazy import lazy_attributes
from sweeper.errors import SweeperError
from sweeper.runtime.base import RunRequest, RunResult, Runtime
from sweeper.runtime.local import LocalRuntime

if TYPE_CHECKING:
    from sweeper.runtime.docker import DockerRuntime

__all__ = [
    "DockerRuntime",
    "LocalRuntime",
    "RunRequest",
    "RunResult",
    "Runtime",
    "get_runtime",
]

# The Docker SDK (and requests under it) is imported only when a Docker runtime is made.
__getattr__ = lazy_attributes(__name__, {"DockerRuntime": "sweeper.runtime.docker"})

#: Runtime classes by name, as ``module:class``.
RUNTIMES: dict[str, str] = {
    "local": "sweeper.runtime.local:LocalRuntime",
    "docker": "sweeper.runtime.docker:DockerRuntime",
}


def get_runtime(name: str) -> Runtime:
    """A new runtime by name (``local`` or ``docker``) with default options.

    Creating a Docker runtime does not contact the daemon; its first run or image lookup
    does, and raises :class:`~sweeper.errors.RuntimeUnavailableError` if it is unreachable.
    """
    try:
        module_name, class_name = RUNTIMES[name].split(":")
    except KeyError:
        raise SweeperError(
            f"unknown runtime {name!r}: use one of {', '.join(sorted(RUNTIMES))}"
        ) from None
    runtime_class: type[Runtime] = getattr(importlib.import_module(module_name), class_name)
    return runtime_class()
