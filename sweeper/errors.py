"""The error types every layer raises for problems a user can fix.

The CLI turns any :class:`SweeperError` into a one-paragraph message and a non-zero exit,
never a traceback. Raise these (or a subclass) for bad input; let programming errors surface.
"""

from __future__ import annotations


class SweeperError(Exception):
    """A problem the user can fix: bad configuration, bad value, missing image, unreachable cluster."""

    exit_code: int = 2


class ConfigError(SweeperError):
    """The valohai.yaml cannot be read or is invalid; the message names file and line."""


class ParameterValueError(SweeperError):
    """A parameter value has the wrong type, is out of range or is not one of the choices."""


class InputError(SweeperError):
    """An input is missing, unreadable, has an unsupported scheme or tries to escape its folder."""


class RuntimeUnavailableError(SweeperError):
    """The runtime cannot start executions: the Docker daemon is unreachable, or an image is missing."""


class StoreError(SweeperError):
    """The store is missing, is not a store, or an id in it is unknown."""


class ClusterError(SweeperError):
    """The Ray cluster is unreachable or cannot satisfy a resource request."""
