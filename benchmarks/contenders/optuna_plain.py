"""Plain Optuna: ``study.optimize(n_jobs=2)`` with a TPE (or random) sampler, in memory.

The TPE sampler has sweeper's settings (multivariate, constant liar) so that the only
difference to sweeper is everything around Optuna.
"""

from __future__ import annotations

import optuna

from benchmarks.contenders.common import SPACES, Args, Clock, parse_args, run_local, write_report

optuna.logging.set_verbosity(optuna.logging.WARNING)


def make_sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    """The sampler sweeper builds for ``--sampler name``."""
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True)


def main() -> None:
    """Optimize and write the report."""
    clock = Clock()
    args: Args = parse_args(__doc__ or "")
    space = SPACES[args.step]
    study = optuna.create_study(
        direction=args.direction, sampler=make_sampler(args.sampler, args.seed)
    )

    def objective(trial: optuna.Trial) -> float:
        params = {n: trial.suggest_float(n, lo, hi, log=log) for n, (lo, hi, log) in space.items()}
        return float(run_local(args.step, params)[args.metric])

    clock.mark("ready")
    study.optimize(objective, n_trials=args.trials, n_jobs=args.parallel)
    clock.mark("trials")
    values = [t.value for t in study.trials if t.value is not None]
    write_report(args, values, clock, loop_s=clock.between("ready", "trials"))


if __name__ == "__main__":
    main()
