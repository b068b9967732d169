"""Ray Tune with OptunaSearch: a function trainable runs the step's command and reports.

``max_concurrent_trials=parallel``, ``reuse_actors=True``; the TPE sampler has sweeper's
settings (multivariate, constant liar). Ray is started first (same options as sweeper's
embedded Ray) so that its start-up time is reported apart from ``Tuner.fit``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from benchmarks.contenders.common import SPACES, Clock, parse_args, run_local, write_report


def main() -> None:
    """Tune and write the report."""
    clock = Clock()
    args = parse_args(__doc__ or "")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import optuna
    import ray
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    clock.mark("imports")
    ray.init(
        address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING
    )
    clock.mark("ray_init")
    step, metric = args.step, args.metric
    mode = "min" if args.direction == "minimize" else "max"

    def trainable(config: dict[str, Any]) -> None:
        tune.report({metric: float(run_local(step, config)[metric])})

    space = {
        name: (tune.loguniform(lo, hi) if log else tune.uniform(lo, hi))
        for name, (lo, hi, log) in SPACES[step].items()
    }
    if args.sampler == "random":
        sampler: optuna.samplers.BaseSampler = optuna.samplers.RandomSampler(seed=args.seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=args.seed, constant_liar=True, multivariate=True)
    search = OptunaSearch(metric=metric, mode=mode, sampler=sampler)
    # fractional CPUs, as sweeper's --cpus-per-trial: more trials in flight than cores
    resources = {"cpu": args.cpus_per_trial if args.cpus_per_trial is not None else 1}
    tuner = tune.Tuner(
        tune.with_resources(trainable, resources),
        param_space=space,
        tune_config=tune.TuneConfig(
            search_alg=search,
            num_samples=args.trials,
            max_concurrent_trials=args.parallel,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(storage_path=str(args.workdir / "tune"), name="bench", verbose=0),
    )
    results = tuner.fit()
    clock.mark("sweep")
    frame = results.get_dataframe()
    values = [float(v) for v in frame[metric].dropna()] if metric in frame else []
    ray.shutdown()
    clock.mark("ray_shutdown")
    write_report(
        args,
        values,
        clock,
        errors=len(results.errors),
        ray_init_s=clock.between("imports", "ray_init"),
        loop_s=clock.between("ray_init", "sweep"),
    )


if __name__ == "__main__":
    main()
