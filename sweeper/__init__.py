"""sweeper: valohai.yaml steps and sweeps on Ray.

The Python API (:mod:`sweeper.api`) is imported on first use, so that ``sweep lint`` and
``sweep --help`` do not load Ray, Optuna or pandas::

    import sweeper
    record = sweeper.run("train", parameters={"learning_rate": 0.01}, runtime="local")
    result = sweeper.run_pipeline("train-pipeline", runtime="local")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sweeper._lazy import lazy_attributes

__version__ = "0.1.0"

if TYPE_CHECKING:
    from sweeper.api import (
        NodeResult,
        PipelineResult,
        SweepResult,
        rerun,
        resume_pipeline,
        resume_sweep,
        run,
        run_group,
        run_pipeline,
        run_sweep,
    )

__all__ = [
    "NodeResult",
    "PipelineResult",
    "SweepResult",
    "__version__",
    "rerun",
    "resume_pipeline",
    "resume_sweep",
    "run",
    "run_group",
    "run_pipeline",
    "run_sweep",
]

__getattr__ = lazy_attributes(
    __name__, {name: "sweeper.api" for name in __all__ if name != "__version__"}
)
