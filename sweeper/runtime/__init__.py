"""How one execution's commands run: a local process group or a Docker container.

Both runtimes implement :class:`Runtime`: ``run(request, on_output, stop) -> RunResult``.

>>> runtime = get_runtime("local")
>>> runtime.name
'local'
"""

from __future__ import annotations

from sweeper.errors import SweeperError
from sweeper.runtime.base import RunRequest, RunResult, Runtime
from sweeper.runtime.docker import DockerRuntime
from sweeper.runtime.local import LocalRuntime

__all__ = [
    "DockerRuntime",
    "LocalRuntime",
    "RunRequest",
    "RunResult",
    "Runtime",
    "get_runtime",
]

RUNTIMES: dict[str, type[Runtime]] = {"local": LocalRuntime, "docker": DockerRuntime}


def get_runtime(name: str) -> Runtime:
    """A new runtime by name (``local`` or ``docker``) with default options.

    Creating a Docker runtime does not contact the daemon; its first run or image lookup
    does, and raises :class:`~sweeper.errors.RuntimeUnavailableError` if it is unreachable.
    """
    try:
        runtime_class = RUNTIMES[name]
    except KeyError:
        raise SweeperError(
            f"unknown runtime {name!r}: use one of {', '.join(sorted(RUNTIMES))}"
        ) from None
    return runtime_class()
