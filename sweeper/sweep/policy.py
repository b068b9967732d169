"""What a sweep decides, as opposed to how executions run: which way its metrics rank.

>>> guess_direction("val_loss"), guess_direction("Error_rate"), guess_direction("accuracy")
('minimize', 'minimize', 'maximize')
"""

from __future__ import annotations


def guess_direction(metric: str) -> str:
    """``minimize`` for a metric named like a loss or an error (any case), else ``maximize``.

    The one guess for a sweep's ``--metric`` without ``--direction`` and for a pipeline
    task's ``optimization-target-metric``.
    """
    lowered = metric.lower()
    return "minimize" if ("loss" in lowered or "error" in lowered) else "maximize"
