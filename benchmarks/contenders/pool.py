"""The floor: a plain 2-worker thread pool running the step's command N times.

Parameters are drawn uniformly at random (no optimizer). With ``--runtime docker`` each
trial is ``docker run --rm`` of the same command through the Docker SDK, with the project
folder mounted where sweeper mounts it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks.contenders.common import (
    SPACES,
    Args,
    Clock,
    command_line,
    last_metrics,
    parse_args,
    run_local,
    write_report,
)
from benchmarks.paths import IMAGE, PROJECT

MOUNT = "/valohai/repository"


def draw(step: str, rng: random.Random) -> dict[str, Any]:
    """Uniform (log-uniform where the space says so) parameters for ``step``."""
    params: dict[str, Any] = {}
    for name, (low, high, log) in SPACES[step].items():
        if log:
            import math

            params[name] = math.exp(rng.uniform(math.log(low), math.log(high)))
        else:
            params[name] = rng.uniform(low, high)
    return params


def docker_runner(step: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A function that runs one trial as ``docker run --rm`` and returns its metrics."""
    import docker

    client = docker.from_env()

    def run(params: dict[str, Any]) -> dict[str, Any]:
        logs = client.containers.run(
            IMAGE,
            ["/bin/sh", "-e", "-c", command_line(step, params)],
            working_dir=MOUNT,
            volumes={str(PROJECT): {"bind": MOUNT, "mode": "ro"}},
            environment={"PYTHONUNBUFFERED": "1"},
            remove=True,
            stdout=True,
            stderr=True,
        )
        return last_metrics(logs.decode())

    return run


def main() -> None:
    """Run the pool and write the report."""
    clock = Clock()
    args: Args = parse_args(__doc__ or "")
    rng = random.Random(args.seed)
    trials = [draw(args.step, rng) for _ in range(args.trials)]
    if args.runtime == "docker":
        runner = docker_runner(args.step)
    else:

        def runner(params: dict[str, Any]) -> dict[str, Any]:
            return run_local(args.step, params)

    clock.mark("ready")
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        results = list(pool.map(runner, trials))
    clock.mark("trials")
    values = [float(r[args.metric]) for r in results if args.metric in r]
    write_report(args, values, clock, loop_s=clock.between("ready", "trials"))


if __name__ == "__main__":
    main()
