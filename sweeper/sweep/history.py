"""What a sweep learns from the store's history: warm starts and trials answered from it.

*Warm start* (``--warm-start SWEEP_ID|latest|step``): the complete executions of earlier
sweeps of the same step are added to the new study before its first ask, as finished
trials (Optuna's ``add_trials``), when their parameters fit the new search space and they
printed the metric. They inform the sampler but are not the new sweep's trials: they do not
count towards ``--trials`` and never become its best.

*Cache* (``--reuse``): a suggested parameter set whose spec hash (code, image digest,
command, parameters, input checksums) matches a complete execution is answered from the
store: a new record that points at it (``reused_from``) is written, and no slot is taken
and no process started.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial

from sweeper.errors import SweeperError
from sweeper.execution.inputs import InputFile, fetch_inputs
from sweeper.execution.runner import ExecutionContext, planned_record, reused_record
from sweeper.execution.spec import ExecutionSpec
from sweeper.record import ExecutionRecord, objective_values
from sweeper.runtime import get_runtime
from sweeper.status import Status
from sweeper.sweep.result import WarmStart
from sweeper.sweep.space import SearchSpace, admits
from sweeper.sweep.state import WARM_START

if TYPE_CHECKING:
    from sweeper.store import RecordStore

#: The user attribute naming the execution a warm-start trial was made from.
WARM_START_ATTR = "warm_start_from"
#: The user attribute naming the execution a trial was answered from (``--reuse``).
REUSED_ATTR = "reused_from"


def trial_distributions(space: SearchSpace) -> dict[str, BaseDistribution]:
    """What every trial of ``space`` is asked with: its distributions, a grid's axes as choices."""
    distributions = dict(space.distributions)
    for name, values in (space.grid or {}).items():
        distributions[name] = CategoricalDistribution(values)
    return distributions


# -- warm start ------------------------------------------------------------------------------


def resolve_sources(
    store: RecordStore, step: str, refs: Sequence[str], *, exclude: str | None = None
) -> list[str]:
    """The sweep ids ``refs`` name: an id (or unique prefix), ``latest`` or ``step`` (all of ``step``).

    Only sweeps of ``step`` are accepted; ``exclude`` (the new sweep) is never one.
    """
    rows = store.read_dataset("sweeps", columns=["sweep_id", "step", "created_at"]).to_pylist()
    first: dict[str, dict[str, Any]] = {}
    for row in rows:  # the sweeps dataset has a row per status change: keep one per sweep
        if row["sweep_id"] and row["sweep_id"] != exclude:
            first.setdefault(row["sweep_id"], row)
    mine = sorted(
        (r for r in first.values() if r["step"] == step),
        key=lambda r: (r["created_at"] is not None, r["created_at"]),
    )
    chosen: list[str] = []
    for ref in refs:
        if ref == "step":
            found = [r["sweep_id"] for r in mine]
        elif ref == "latest":
            found = [mine[-1]["sweep_id"]] if mine else []
        else:
            matches = [s for s in first if s == ref] or [s for s in first if s.startswith(ref)]
            if len(matches) != 1:
                what = "matches several sweeps" if matches else "is not a sweep in the store"
                raise SweeperError(f'--warm-start {ref}: "{ref}" {what} {store.location}')
            if first[matches[0]]["step"] != step:
                raise SweeperError(
                    f"--warm-start {ref}: sweep {matches[0]} is of step "
                    f'"{first[matches[0]]["step"]}", not "{step}"'
                )
            found = matches
        if not found:
            raise SweeperError(
                f'--warm-start {ref}: no earlier sweep of step "{step}" in {store.location}'
            )
        chosen += [s for s in found if s not in chosen]
    return chosen


def fit(
    parameters: Mapping[str, Any], space: SearchSpace
) -> tuple[dict[str, Any] | None, str | None]:
    """The trial parameters of an execution in ``space``, or None and why it does not fit.

    >>> from optuna.distributions import FloatDistribution
    >>> space = SearchSpace({"x": FloatDistribution(0, 1)}, fixed={"epochs": 3})
    >>> fit({"x": 0.5, "epochs": 3}, space)
    ({'x': 0.5}, None)
    >>> fit({"x": 2.0, "epochs": 3}, space)
    (None, 'x outside 0..1')
    >>> fit({"x": 0.5, "epochs": 5}, space)
    (None, 'epochs is not the fixed 3')
    """
    params: dict[str, Any] = {}
    for name, dist in trial_distributions(space).items():
        if name not in parameters:
            return None, f"missing parameter {name}"
        value = parameters[name]
        if not admits(dist, value):
            if isinstance(dist, CategoricalDistribution):
                return None, f"{name} not a choice"
            low, high = getattr(dist, "low", "?"), getattr(dist, "high", "?")
            return None, f"{name} outside {low:g}..{high:g}"
        params[name] = dist.to_external_repr(dist.to_internal_repr(value))
    for name, value in space.fixed.items():
        if name in parameters and parameters[name] != value:
            return None, f"{name} is not the fixed {value!r}"
    return params, None


def warm_start(
    study: optuna.Study,
    store: RecordStore,
    sweep_ids: Sequence[str],
    space: SearchSpace,
    metrics: Sequence[str],
) -> WarmStart:
    """Add the complete executions of ``sweep_ids`` that fit ``space`` to ``study`` as trials."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = store.read_dataset(
        "executions", columns=["execution_id", "sweep_id", "status", "parameters", "metrics"]
    )
    mask = pc.and_(
        pc.equal(table["status"], Status.COMPLETE.value),
        pc.is_in(table["sweep_id"], pa.array(list(sweep_ids), pa.string())),
    )
    distributions = trial_distributions(space)
    skipped: Counter[str] = Counter()
    trials: list[FrozenTrial] = []
    seen: set[str] = set()
    for row in table.filter(mask).to_pylist():
        execution_id = row["execution_id"]
        if execution_id in seen:
            continue
        seen.add(execution_id)
        params, why = fit(json.loads(row["parameters"] or "{}"), space)
        values = (
            objective_values(json.loads(row["metrics"] or "{}"), list(metrics)) if metrics else None
        )
        if params is not None and values is None:
            why = f"metric {', '.join(metrics)} missing" if metrics else "no metric to rank by"
        if params is None or values is None:
            skipped[why or "did not fit"] += 1
            continue
        trials.append(
            optuna.trial.create_trial(
                params=params,
                distributions={name: distributions[name] for name in params},
                values=values,
                user_attrs={
                    "outcome": WARM_START,
                    WARM_START_ATTR: execution_id,
                    "execution_id": execution_id,
                },
            )
        )
    study.add_trials(trials)
    return WarmStart(tuple(sweep_ids), len(trials), dict(skipped.most_common()))


# -- cache -----------------------------------------------------------------------------------


class TrialCache:
    """Answers trials from complete executions with the same spec hash (``sweep --reuse``).

    The inputs and image of a sweep are the same for every trial, so their checksums and
    digest are worked out once, on the first lookup; each trial then costs one hash and one
    look in the store's index.
    """

    def __init__(self, store: RecordStore, runtime: str) -> None:
        self.store = store
        self.runtime = get_runtime(runtime)
        self._identity: tuple[list[InputFile], str | None, str | None] | None = None
        self._unavailable = False

    def _identify(
        self, spec: ExecutionSpec
    ) -> tuple[list[InputFile], str | None, str | None] | None:
        """The sweep's input files, image digest and identity image; None when unavailable.

        An input or image this driver cannot have answers no trial from the store: the
        trials run and fail (or not) where they run, as without ``--reuse``.
        """
        if self._identity is None and not self._unavailable:
            try:
                self._identity = self._resolve(spec)
            except SweeperError:
                self._unavailable = True
        return self._identity

    def _resolve(self, spec: ExecutionSpec) -> tuple[list[InputFile], str | None, str | None]:
        with tempfile.TemporaryDirectory(prefix="sweeper-reuse-") as tmp:
            files = fetch_inputs(
                spec.inputs,
                spec.step_inputs,
                inputs_dir=Path(tmp),
                project_dir=Path(spec.project_dir),
                cache_dir=self.store.scratch_dir() / "input-cache",
                store=self.store,
            )
        digest = self.runtime.resolve_image(spec.image, spec.pull_policy) if spec.image else None
        image = (digest or spec.image) if self.runtime.uses_images else None
        return files, digest, image

    def answer(
        self, spec: ExecutionSpec, execution_id: str, context: ExecutionContext
    ) -> ExecutionRecord | None:
        """The record of ``execution_id`` answered from the store, or None when nothing matches."""
        identity = self._identify(spec)
        if identity is None:
            return None
        files, digest, image = identity
        spec_hash = spec.spec_hash([(f.name, f.path, f.sha256) for f in files], image)
        previous = self.store.find_completed(spec_hash)
        if previous is None:
            return None
        planned = replace(
            planned_record(spec, execution_id, context, with_image=self.runtime.uses_images),
            counter=self.store.allocate_counter(),
            image_digest=digest,
            inputs=tuple(
                {"name": f.name, "uri": f.uri, "path": f.path, "sha256": f.sha256, "size": f.size}
                for f in files
            ),
            spec_hash=spec_hash,
        )
        record = reused_record(planned, previous)
        self.store.put_record(record)
        return record
