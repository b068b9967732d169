"""Whether a re-run reproduced an execution: two records in, a typed :class:`Verification` out.

Pure: no store, no runtime. :func:`compare_records` looks at what the two records say,
field by field: the exit status, every metric (equal, or within a tolerance), every output's
sha256; and at what the re-run could not hold equal (an image of another digest, an input of
another checksum, secret variables that were never recorded, another machine or GPUs).
``sweep verify`` (:mod:`sweeper.api.verify`) runs the execution again and calls it.

>>> from sweeper.record import ExecutionRecord
>>> first = ExecutionRecord.from_dict({"id": "e1", "status": "complete", "exit_code": 0,
...     "metrics": {"loss": 0.5}, "outputs": [{"path": "a.txt", "sha256": "ab"}]})
>>> again = ExecutionRecord.from_dict({"id": "e2", "status": "complete", "exit_code": 0,
...     "metrics": {"loss": 0.5000001}, "outputs": [{"path": "a.txt", "sha256": "ab"}]})
>>> compare_records(first, again).reproduced, compare_records(first, again, tolerance=1e-3).reproduced
(False, True)
>>> [check.name for check in compare_records(first, again).differing]
['metric.loss']
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sweeper.record import ExecutionRecord

#: How the environment shows a secret value (a record never holds the value itself).
_MASK = "****"


@dataclass(frozen=True)
class Check:
    """One field compared: its name (``exit status``, ``metric.loss``, ``output.model.pt``),
    the original's value, the re-run's (None where it has none) and whether they agree."""

    name: str
    expected: Any
    got: Any
    equal: bool


@dataclass(frozen=True)
class Verification:
    """The outcome of re-running ``original`` as ``rerun``.

    ``reproduced`` when every check agrees: the exit status, each metric (within
    ``tolerance``) and each output's sha256. ``not_held`` says, in words, what the re-run
    could not hold equal to the original run; it does not decide the verdict, it says how
    far the verdict reaches.
    """

    original: str
    rerun: str
    tolerance: float
    checks: tuple[Check, ...]
    not_held: tuple[str, ...]

    @property
    def reproduced(self) -> bool:
        """Whether every check agrees."""
        return all(check.equal for check in self.checks)

    @property
    def differing(self) -> tuple[Check, ...]:
        """The checks that disagree."""
        return tuple(check for check in self.checks if not check.equal)

    def to_dict(self) -> dict[str, Any]:
        """The verification as JSON (``sweep verify --json``), its verdict first."""
        return {"reproduced": self.reproduced, **asdict(self)}


def metric_agrees(expected: Any, got: Any, tolerance: float) -> bool:
    """Equal, or both numbers within ``tolerance`` (absolute, or relative to the larger one).

    >>> metric_agrees(1.0, 1.0, 0.0), metric_agrees(100.0, 100.5, 0.01), metric_agrees("a", "b", 1)
    (True, True, False)
    """
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (expected, got))
    if expected == got or not numbers or tolerance <= 0:
        return bool(expected == got)
    return math.isclose(float(expected), float(got), rel_tol=tolerance, abs_tol=tolerance)


def compare_records(
    original: ExecutionRecord,
    rerun: ExecutionRecord,
    *,
    tolerance: float = 0.0,
    notes: Sequence[str] = (),
) -> Verification:
    """Compare the re-run's record with the original's, field by field.

    ``notes`` are what the caller found could not be held equal besides what the records
    show (an image tag that has moved since).
    """
    checks = [
        Check("exit status", _exit(original), _exit(rerun), _exit(original) == _exit(rerun)),
    ]
    for name in _union(original.metrics, rerun.metrics):
        expected, got = original.metrics.get(name), rerun.metrics.get(name)
        checks.append(
            Check(f"metric.{name}", expected, got, metric_agrees(expected, got, tolerance))
        )
    before, after = _by_path(original.outputs), _by_path(rerun.outputs)
    for path in _union(before, after):
        expected, got = before.get(path), after.get(path)
        checks.append(Check(f"output.{path}", expected, got, expected == got))
    return Verification(
        original=original.id,
        rerun=rerun.id,
        tolerance=tolerance,
        checks=tuple(checks),
        not_held=(*_not_held(original, rerun), *notes),
    )


def _exit(record: ExecutionRecord) -> str:
    code = "" if record.exit_code is None else f" (exit code {record.exit_code})"
    return f"{record.status}{code}"


def _union(first: Mapping[str, Any], second: Mapping[str, Any]) -> list[str]:
    return [*first, *(name for name in second if name not in first)]


def _by_path(files: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {str(item.get("path")): item.get("sha256") for item in files}


def _not_held(original: ExecutionRecord, rerun: ExecutionRecord) -> list[str]:
    """What the records show the re-run could not hold equal."""
    found = []
    if original.image_digest != rerun.image_digest:
        found.append(f"image: {original.image_digest} then, {rerun.image_digest} now")
    if original.code_version != rerun.code_version:
        found.append(f"code: version {original.code_version} then, {rerun.code_version} now")
    now = {(i.get("name"), i.get("path")): i.get("sha256") for i in rerun.inputs}
    for item in original.inputs:
        sha = now.get((item.get("name"), item.get("path")))
        if sha != item.get("sha256"):
            found.append(
                f'input "{item.get("name")}" ({item.get("uri")}): sha256 {item.get("sha256")} '
                f"then, {sha or 'missing'} now"
            )
    secrets = sorted(k for k, v in original.environment.items() if v == _MASK)
    if secrets:
        found.append(f"secret variables were not recorded and were left out: {', '.join(secrets)}")
    if len(original.gpu_ids) != len(rerun.gpu_ids):
        found.append(f"GPUs: {len(original.gpu_ids)} then, {len(rerun.gpu_ids)} now")
    elif original.gpu_ids:
        found.append("GPUs: their kind is not recorded, another kind may have run it")
    if original.host and rerun.host and original.host != rerun.host:
        found.append(f"host: {original.host} then, {rerun.host} now")
    return found
