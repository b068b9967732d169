"""The sampler and pruner names the CLI accepts, without importing Optuna.

`sweep sweep --help` and the option parser need the names; only building a sampler or a pruner
(:mod:`sweeper.sweep.samplers`) needs Optuna.
"""

SAMPLERS = ("tpe", "random", "grid", "cmaes", "gp", "nsga2", "qmc")
PRUNERS = ("none", "median", "hyperband", "asha")
#: Samplers that never read the values of finished trials: they can sweep without a metric.
VALUE_FREE_SAMPLERS = ("grid", "random", "qmc")
