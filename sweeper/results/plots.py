"""PNG plots of a sweep: optimization history, parameter importances, parallel coordinates,
the metric curves of the best trials (matplotlib, via Optuna's own plot functions) and
pruner replays."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeper.errors import SweeperError

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from sweeper.results._results import Results
    from sweeper.results.replay import Replay
    from sweeper.store import RecordStore


def _save(axes_or_figure: Any, path: Path) -> Path:
    figure = (
        axes_or_figure.get_figure() if hasattr(axes_or_figure, "get_figure") else axes_or_figure
    )
    if hasattr(axes_or_figure, "flat"):
        figure = axes_or_figure.flat[0].get_figure()
    figure.set_size_inches(10, 6)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path


def plot_sweep(
    store: RecordStore, results: Results, sweep_id: str, out_dir: Path, *, top: int = 5
) -> list[Path]:
    """Write the sweep's plots into ``out_dir``; return the files written."""
    import matplotlib

    matplotlib.use("Agg")
    from optuna.trial import TrialState

    from sweeper.sweep.study import load_study

    saved = store.get_sweep(sweep_id)
    if not saved:
        raise SweeperError(f'unknown sweep "{sweep_id}" in the store {store.location}')
    options = saved["options"]
    metrics = list(options.get("metrics") or [])
    study = load_study(store, sweep_id, options.get("storage"))
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise SweeperError(f"sweep {sweep_id} has no complete trial to plot yet")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = _study_plots(study, complete, metrics, out_dir)
    if metrics:
        written.append(_top_trials(results, sweep_id, metrics[0], top, out_dir))
    return written


def _study_plots(
    study: optuna.Study, complete: list[FrozenTrial], metrics: list[str], out_dir: Path
) -> list[Path]:
    """Optuna's history plot, and with two trials that differ its importances, parallel
    coordinates and slices (of the first metric)."""
    from optuna.visualization import matplotlib as optuna_plots

    target: dict[str, Any] = {}
    if len(metrics) > 1:
        target = {"target": lambda t: t.values[0], "target_name": metrics[0]}
    elif metrics:
        target = {"target_name": metrics[0]}
    written = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        written.append(
            _save(optuna_plots.plot_optimization_history(study, **target), out_dir / "history.png")
        )
        varied = {
            k
            for t in complete
            for k in t.distributions
            if len({str(x.params.get(k)) for x in complete}) > 1
        }
        if len(complete) < 2 or not varied:
            return written
        for plot, name in (
            (optuna_plots.plot_param_importances, "importances.png"),
            (optuna_plots.plot_parallel_coordinate, "parallel_coordinate.png"),
            (optuna_plots.plot_slice, "slice.png"),
        ):
            written.append(_save(plot(study, **target), out_dir / name))
    return written


def _top_trials(results: Results, sweep_id: str, metric: str, top: int, out_dir: Path) -> Path:
    """The curves of ``metric`` during the ``top`` best trials."""
    import matplotlib.pyplot as plt

    best = results.best(sweep_id, k=top)
    events = results.metrics()
    figure, axes = plt.subplots()
    for _, row in best.iterrows():
        curve = events[(events["execution_id"] == row["execution_id"]) & (events["key"] == metric)]
        if curve.empty:
            continue
        label = f"#{int(row['counter'])} trial {int(row['trial_number'])}: {row[f'metric.{metric}']:.4g}"
        axes.plot(range(1, len(curve) + 1), curve["value"].to_numpy(), marker="o", label=label)
    axes.set_xlabel("report (JSON line) number")
    axes.set_ylabel(metric)
    axes.set_title(f"{metric} during the {len(best)} best trials of sweep {sweep_id}")
    axes.legend()
    axes.grid(alpha=0.3)
    return _save(figure, out_dir / "top_trials.png")


def plot_replay(replay: Replay, out_dir: Path) -> Path:
    """Write ``replay-<pruner>.png``: every replayed curve, each pruned one solid up to its
    prune point (a cross) and faint after it, the recorded best trial in bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    out_dir.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots()
    for trial in replay.trials:
        steps = list(range(len(trial.curve)))
        best = trial.execution_id == replay.best_execution_id
        style: dict[str, Any] = {"linewidth": 2.5, "zorder": 3} if best else {"linewidth": 1.0}
        if trial.pruned_at_step is None:
            label = f"trial {trial.replay_number}" + (" (best)" if best else "")
            axes.plot(steps, trial.curve, color="tab:green", label=label, **style)
            continue
        cut = trial.pruned_at_step + 1
        (line,) = axes.plot(steps[:cut], trial.curve[:cut], color="tab:red", **style)
        axes.plot(steps[cut - 1 :], trial.curve[cut - 1 :], color="tab:red", alpha=0.2, ls="--")
        axes.plot([trial.pruned_at_step], [trial.curve[trial.pruned_at_step]], "x", color="black")
        line.set_label(
            f"trial {trial.replay_number} pruned at step {trial.pruned_at_step}"
            + (" (best)" if best else "")
        )
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are report numbers
    axes.set_xlabel("step (report number)")
    axes.set_ylabel(replay.metric)
    rho = "n/a" if replay.rank_correlation is None else f"{replay.rank_correlation:.2f}"
    axes.set_title(
        f"{replay.pruner} on sweep {replay.sweep_id}: {len(replay.pruned)}/{len(replay.trials)} "
        f"pruned, {replay.saved_percent:.0f}% compute saved, best "
        f"{'survives' if replay.best_survived else 'pruned'}, Spearman {rho}",
        fontsize=9,
    )
    if len(replay.trials) <= 20:
        axes.legend(fontsize=7, ncol=2)
    axes.grid(alpha=0.3)
    return _save(figure, out_dir / f"replay-{replay.pruner}.png")
