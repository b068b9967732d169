"""sweeper: valohai.yaml steps and sweeps on Ray.

The Python API (:mod:`sweeper.api`) is imported on first use, so that ``sweep lint`` and
``sweep --help`` do not load Ray, Optuna or pandas::

    import sweeper
    record = sweeper.run("train", parameters={"learning_rate": 0.01}, runtime="local")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sweeper._lazy import lazy_attributes

__version__ = "0.1.0"

if TYPE_CHECKING:
    from sweeper.api import SweepResult, rerun, resume_sweep, run, run_sweep

__all__ = ["SweepResult", "__version__", "rerun", "resume_sweep", "run", "run_sweep"]

__getattr__ = lazy_attributes(
    __name__,
    {name: "sweeper.api" for name in ("SweepResult", "rerun", "resume_sweep", "run", "run_sweep")},
)
