"""Where a sweep's driver spends its time inside Optuna: its storage, and the sampler's own work.

``BENCH_OPTUNA_TIMES=FILE`` makes the sweeper contender call :func:`install` before the
sweep and write the figures to FILE when it exits. Every storage method the driver calls
(a public method of Optuna's ``BaseStorage``: ``get_all_trials``, ``set_trial_user_attr``,
``set_trial_state_values``...) is timed on the storage object each ``Study`` gets, the
outermost call only (a cache's call into its database is part of the cache's call); the
sampler's ``infer_relative_search_space``, ``sample_relative``, ``sample_independent``,
``before_trial`` and ``after_trial`` are timed less the storage calls they make (the
sampler's own work: TPE's estimators). Times are added to the trial being asked: all the
storage work between the ``k``-th and the ``k+1``-th ``Study.ask`` (the tells and attrs of
earlier trials included) counts to trial ``k``, so the per-trial figures are the driver's
storage time per trial as the sweep goes on.

This is a benchmark's instrument, not sweeper's: it patches Optuna in the contender
process only, and costs about a microsecond per call.
"""

from __future__ import annotations

import atexit
import functools
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

STORAGE_METHODS = (
    "create_new_study",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "set_study_user_attr",
    "set_study_system_attr",
    "create_new_trial",
    "set_trial_param",
    "get_trial_id_from_study_id_trial_number",
    "get_trial_number_from_id",
    "get_trial_param",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial",
    "get_all_trials",
    "get_n_trials",
    "get_best_trial",
    "get_trial_params",
    "get_trial_user_attrs",
    "get_trial_system_attrs",
    "check_trial_is_updatable",
    "write_waiting",  # sweeper's grouped writes to a database (sweeper.sweep.indexed_storage)
)
SAMPLER_METHODS = (
    "infer_relative_search_space",
    "sample_relative",
    "sample_independent",
    "before_trial",
    "after_trial",
)


class Timings:
    """Per-trial storage and sampler milliseconds, and per-method totals."""

    def __init__(self) -> None:
        self.asks = 0
        self.storage_ms: list[float] = [0.0]  # [0]: before the first ask (opening the study)
        self.sampler_ms: list[float] = [0.0]
        self.methods: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
        self._storage_depth = 0
        self._storage_in_sampler = 0.0
        self._sampler_depth = 0

    def asked(self) -> None:
        """A ``Study.ask`` began: what follows counts to the next trial."""
        self.asks += 1
        self.storage_ms.append(0.0)
        self.sampler_ms.append(0.0)

    def storage(self, name: str, method: Any) -> Any:
        """``method`` timed as storage when it is the outermost storage call."""

        @functools.wraps(method)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._storage_depth:
                return method(*args, **kwargs)
            self._storage_depth += 1
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                took = (time.perf_counter() - started) * 1000
                self._storage_depth -= 1
                self.storage_ms[-1] += took
                if self._sampler_depth:
                    self._storage_in_sampler += took
                entry = self.methods[f"storage.{name}"]
                entry[0] += 1
                entry[1] += took

        return timed

    def sampler(self, name: str, method: Any) -> Any:
        """``method`` timed as the sampler's own work (less the storage calls it makes)."""

        @functools.wraps(method)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._sampler_depth:
                return method(*args, **kwargs)
            self._sampler_depth += 1
            self._storage_in_sampler = 0.0
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                took = (time.perf_counter() - started) * 1000 - self._storage_in_sampler
                self._sampler_depth -= 1
                self.sampler_ms[-1] += took
                entry = self.methods[f"sampler.{name}"]
                entry[0] += 1
                entry[1] += took

        return timed

    def summary(self) -> dict[str, Any]:
        """First and last 10% of the trials: mean storage and sampler ms per trial.

        The last trial's share is left out: it also holds the sweep's end (its last tells
        and the result read from the study), a one-off.
        """
        storage = self.storage_ms[1:-1]
        sampler = self.sampler_ms[1:-1]
        k = max(1, len(storage) // 10)
        out: dict[str, Any] = {"asks": self.asks, "open_storage_ms": self.storage_ms[0]}
        for label, values in (("storage", storage), ("sampler", sampler)):
            if not values:
                continue
            out[f"first_{label}_ms"] = sum(values[:k]) / len(values[:k])
            out[f"last_{label}_ms"] = sum(values[-k:]) / len(values[-k:])
        out["methods"] = {
            name: {"calls": int(calls), "ms": round(ms, 3)}
            for name, (calls, ms) in sorted(self.methods.items(), key=lambda kv: -kv[1][1])
        }
        return out


def _samplers() -> list[type]:
    """TPE, random, and the samplers built on them (sweeper's TPE, where it has one)."""
    import optuna

    try:
        import sweeper.sweep.samplers  # noqa: F401  (defines sweeper's own, if any)
    except ImportError:
        pass
    found: list[type] = []
    todo: list[type] = [optuna.samplers.TPESampler, optuna.samplers.RandomSampler]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def install(path: Path) -> Timings:
    """Patch Optuna in this process; write the summary to ``path`` when the process exits."""
    import optuna
    from optuna.study import study as study_module

    timings = Timings()
    get_storage = optuna.storages.get_storage

    def instrumented(storage: Any) -> Any:
        found = get_storage(storage)
        if not getattr(found, "_bench_timed", False):
            for name in STORAGE_METHODS:
                method = getattr(found, name, None)
                if method is not None:
                    setattr(found, name, timings.storage(name, method))
            found._bench_timed = True
        return found

    optuna.storages.get_storage = instrumented
    study_module.storages.get_storage = instrumented  # the name Study.__init__ calls

    ask = optuna.Study.ask

    @functools.wraps(ask)
    def counted_ask(self: Any, *args: Any, **kwargs: Any) -> Any:
        timings.asked()
        return ask(self, *args, **kwargs)

    optuna.Study.ask = counted_ask  # type: ignore[method-assign]
    for cls in _samplers():
        for name in SAMPLER_METHODS:
            if name in cls.__dict__:
                setattr(cls, name, timings.sampler(name, cls.__dict__[name]))
    atexit.register(lambda: path.write_text(json.dumps(timings.summary())))
    return timings
