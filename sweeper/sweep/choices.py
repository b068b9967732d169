"""The sampler and pruner names the CLI accepts, without importing Optuna.

`sweep sweep --help` and the option parser need the names; only building a sampler or a pruner
(:mod:`sweeper.sweep.samplers`) needs Optuna.
"""

SAMPLERS = ("tpe", "random", "grid", "cmaes", "gp", "nsga2", "qmc")
PRUNERS = ("none", "median", "hyperband", "asha")
