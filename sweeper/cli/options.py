"""Options several ``sweep`` commands share, defined once so that they read the same everywhere."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click

from sweeper.runtime import DEFAULT_RUNTIME as _BUILTIN_DEFAULT
from sweeper.runtime import runtime_names

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

#: The names in :data:`sweeper.runtime.RUNTIMES`: a registered runtime is a choice here too.
RUNTIMES = click.Choice(runtime_names())
#: ``docker`` (Valohai's model: each step in its image) unless SWEEPER_RUNTIME says otherwise.
DEFAULT_RUNTIME = os.environ.get("SWEEPER_RUNTIME", _BUILTIN_DEFAULT)


def config_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``-f/--config PATH``: the valohai.yaml (default ``./valohai.yaml``)."""
    return click.option(
        "-f",
        "--config",
        "config_path",
        metavar="PATH",
        help="The valohai.yaml (default: ./valohai.yaml).",
    )(func)


def store_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--store PATH|URI``: where executions are recorded (default ``.sweeper/``)."""
    return click.option(
        "--store", metavar="PATH|URI", help="The store (default: .sweeper/ next to valohai.yaml)."
    )(func)


def runtime_option(help_text: str) -> Decorator:
    """``--runtime NAME``, one of :func:`sweeper.runtime.runtime_names`."""
    return click.option(
        "--runtime", type=RUNTIMES, default=DEFAULT_RUNTIME, show_default=True, help=help_text
    )


def pull_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--pull missing|always|never``: the Docker image pull policy."""
    return click.option(
        "--pull",
        "pull_policy",
        type=click.Choice(["missing", "always", "never"]),
        default="missing",
        show_default=True,
        help="Docker image pull policy.",
    )(func)


def env_option(help_text: str) -> Decorator:
    """``-e/--env NAME=VALUE``, repeatable."""
    return click.option("-e", "--env", "env", multiple=True, metavar="NAME=VALUE", help=help_text)


def json_option(help_text: str) -> Decorator:
    """``--json``: machine-readable output on stdout."""
    return click.option("--json", "as_json", is_flag=True, help=help_text)
