"""Commands about results: ls, compare, lineage, plot, replay, compact, doctor, datasets."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sweeper.cli import output
from sweeper.cli.options import config_option, store_option
from sweeper.cli.project import project_from
from sweeper.errors import SweeperError
from sweeper.results import Results
from sweeper.results.tables import missing_last, rows_at, take, to_pandas

if TYPE_CHECKING:
    import pyarrow as pa

    from sweeper.results.replay import Replay

# `ls` works on Arrow tables so that it answers without importing pandas (~0.5 s); the commands
# that need DataFrames import pandas through sweeper.results.

#: Columns `sweep ls` shows in a table before the parameters and metrics.
LS_COLUMNS = [
    "counter",
    "execution_id",
    "step",
    "status",
    "trial_number",
    "duration_s",
    "cpu_s",
    "peak_memory_mb",
]


def _results(config_path: str | None, store: str | None) -> Results:
    return Results(project_from(config_path, store).open_store())


def _latest_sweep_id(results: Results) -> str:
    # the store's one "latest" rule, as `status`, `resume` and `dashboard` use it
    sweep_id = results.store.latest_sweep()
    if sweep_id is None:
        raise SweeperError(f"no sweep in the store {results.store.location}")
    return sweep_id


def _plain(value: Any) -> Any:
    pandas = sys.modules.get("pandas")  # a pandas NA comes only from an imported pandas
    if value is None or (pandas is not None and value is pandas.NA):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return value


@click.command(name="ls")
@click.option(
    "--sweep",
    "sweep_id",
    is_flag=False,
    flag_value="latest",
    default=None,
    metavar="[ID]",
    help="Only this sweep's executions (no value or `latest`: the latest sweep).",
)
@click.option("--step", help="Only executions of this step.")
@click.option("--status", help="Only executions with this status.")
@click.option(
    "--sort",
    "sort_key",
    metavar="[-]COLUMN",
    help="Sort by a column, e.g. -metric.accuracy (descending).",
)
@click.option("--limit", type=int, help="At most N rows.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@config_option
@store_option
def ls(
    sweep_id: str | None,
    step: str | None,
    status: str | None,
    sort_key: str | None,
    limit: int | None,
    fmt: str,
    config_path: str | None,
    store: str | None,
) -> None:
    """List executions, with their parameters (param.*) and summary metrics (metric.*)."""
    results = _results(config_path, store)
    if sweep_id == "latest":
        sweep_id = _latest_sweep_id(results)
    # positions in the dataset, not a table of the chosen rows: taking rows imports
    # pyarrow.compute, and only the rows shown are converted
    table, positions = results.execution_positions(sweep_id=sweep_id, step=step, status=status)
    if sort_key:
        positions = _sorted(table, positions, sort_key)
    if limit is not None:
        # as DataFrame.head: a negative N drops the last -N rows
        positions = positions[: limit if limit >= 0 else max(len(positions) + limit, 0)]
    if fmt == "json":
        rows = [{k: _plain(v) for k, v in row.items()} for row in rows_at(table, positions)]
        click.echo(json.dumps(rows, default=str))
        return
    extra = [c for c in table.column_names if c.startswith("param.")] + [
        c for c in table.column_names if c.startswith("metric.")
    ]
    columns = [c for c in LS_COLUMNS if c in table.column_names] + extra
    if fmt == "csv":
        to_pandas(take(table, positions).select(columns)).to_csv(sys.stdout, index=False)
        return
    cells = [
        [output.format_value(_plain(row[c])) if _plain(row[c]) is not None else "" for c in columns]
        for row in rows_at(table.select(columns), positions)
    ]
    output.table(columns, cells)


def _sorted(table: pa.Table, positions: list[int], sort_key: str) -> list[int]:
    """``positions`` ordered by a column (``-COLUMN``: descending), stably, missing values
    (null, NaN) last: as pandas sorts."""
    column = sort_key.lstrip("-+")
    if column not in table.column_names:
        known = (
            ", ".join(c for c in table.column_names if c.startswith(("metric.", "param.")))
            or "none"
        )
        raise SweeperError(
            f'cannot sort by "{column}": no such column (metric and parameter columns: {known})'
        )
    values = [row[column] for row in rows_at(table.select([column]), positions)]
    present = [row for row, value in enumerate(values) if not missing_last(value)[0]]
    present.sort(key=values.__getitem__, reverse=sort_key.startswith("-"))
    missing = [row for row, value in enumerate(values) if missing_last(value)[0]]
    return [positions[row] for row in present + missing]


@click.command()
@click.argument("executions", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True)
@config_option
@store_option
def compare(
    executions: tuple[str, ...], as_json: bool, config_path: str | None, store: str | None
) -> None:
    """Parameters and metrics of executions side by side; differences highlighted."""
    df = _results(config_path, store).compare(list(executions))
    if as_json:
        click.echo(
            json.dumps(
                {col: {k: _plain(v) for k, v in df[col].items()} for col in df.columns}, default=str
            )
        )
        return
    rows = []
    for name, values in df.iterrows():
        cells = [output.format_value(_plain(v)) for v in values]
        differs = len(set(cells)) > 1 and name not in ("counter",)
        rows.append(
            [
                f"[bold yellow]{name}[/]" if differs else str(name),
                *[f"[yellow]{c}[/]" if differs else c for c in cells],
            ]
        )
    output.table(["", *[str(c)[:12] for c in df.columns]], rows)


@click.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
@config_option
@store_option
def lineage(ref: str, as_json: bool, config_path: str | None, store: str | None) -> None:
    """The lineage of an execution or a datum://: who produced its inputs, who used its outputs."""
    graph = _results(config_path, store).lineage(ref)
    if as_json:
        click.echo(json.dumps(graph.to_dict(), default=str))
        return
    from rich.markup import escape
    from rich.tree import Tree

    def label(node_id: str) -> str:
        node = graph.nodes[node_id]
        if node.kind == "execution":
            attrs = node.attrs
            return escape(
                f"execution #{attrs.get('counter')} {node_id} {attrs.get('step', '')} [{attrs.get('status', '')}]"
            )
        return escape(node_id)

    def grow(tree: Tree, node_id: str, direction: str, seen: set[str]) -> None:
        for edge in graph.edges:
            nxt = edge.source if direction == "up" else edge.target
            here = edge.target if direction == "up" else edge.source
            if here != node_id or nxt in seen:
                continue
            name = f" ({edge.kind} {edge.name})" if edge.name else f" ({edge.kind})"
            branch = tree.add(label(nxt) + name)
            grow(branch, nxt, direction, seen | {nxt})

    root = Tree(f"[bold]{label(graph.root)}[/]")
    up = root.add("upstream (what it used)")
    grow(up, graph.root, "up", {graph.root})
    down = root.add("downstream (what used it)")
    grow(down, graph.root, "down", {graph.root})
    output.stdout.print(root)


@click.command()
@click.argument("sweep_id", required=False)
@click.option(
    "-o",
    "--output",
    "out_dir",
    default="plots",
    show_default=True,
    help="Folder for the PNG files.",
)
@click.option(
    "--top", type=int, default=5, show_default=True, help="Metric curves of this many best trials."
)
@click.option(
    "--replay",
    "replays",
    multiple=True,
    metavar="PRUNER",
    help="Also plot a pruner replay (median, asha, hyperband) as replay-PRUNER.png; repeatable.",
)
@config_option
@store_option
def plot(
    sweep_id: str | None,
    out_dir: str,
    top: int,
    replays: tuple[str, ...],
    config_path: str | None,
    store: str | None,
) -> None:
    """Write PNG plots of a sweep: history, importances, parallel coordinates, top-trial curves
    and, with --replay, the curves a pruner would have cut."""
    from sweeper.results.plots import plot_replay, plot_sweep

    project = project_from(config_path, store)
    opened = project.open_store()
    results = Results(opened)
    sweep_id = sweep_id if sweep_id not in (None, "latest") else _latest_sweep_id(results)
    # every replay is computed before any file is written, so a bad pruner name writes nothing
    replayed = [results.replay(sweep_id, pruner=name) for name in replays]
    written = plot_sweep(opened, results, sweep_id, Path(out_dir), top=top)
    written += [plot_replay(replay, Path(out_dir)) for replay in replayed]
    for path in written:
        click.echo(str(path))


def _seconds(value: float) -> str:
    return f"{value:.2f}s"


def _replay_table(outcome: Replay) -> None:
    """The replayed trials, one row each."""
    better = "lower" if outcome.direction == "minimize" else "higher"
    rows = [
        [
            str(t.replay_number),
            t.execution_id,
            t.recorded_status,
            str(len(t.curve)),
            f"pruned at step {t.pruned_at_step}" if t.pruned else "survives",
            output.format_value(t.value),
            output.format_value(t.recorded_value),
            _seconds(t.used_s),
            _seconds(t.saved_s),
            "best" if t.execution_id == outcome.best_execution_id else "",
        ]
        for t in outcome.trials
    ]
    headers = ["#", "execution_id", "recorded", "steps", outcome.pruner, outcome.metric]
    headers += ["recorded " + outcome.metric, "would use", "saved", ""]
    output.table(
        headers,
        rows,
        title=f"sweep {outcome.sweep_id} replayed under {outcome.pruner} ({better} {outcome.metric} is better)",
    )


def _forecast_replay(results: Results, sweep_id: str, as_json: bool) -> None:
    """``sweep replay --forecast``: the forecast at 10/25/50% progress against the truth."""
    from sweeper.sweep.forecasting_replay import replay_forecast

    outcome = replay_forecast(results.store, sweep_id)
    if as_json:
        click.echo(json.dumps(outcome.to_dict()))
        return
    rows = [
        [
            f"{p.progress:.0%}",
            f"{p.done}/{outcome.trials}",
            "-" if p.p50_s is None else f"{p.p50_s:.1f}s",
            "-" if p.p10_s is None else f"{p.p10_s:.1f}–{p.p90_s:.1f}s",
            f"{p.actual_s:.1f}s",
            "-" if p.error is None else f"{p.error:+.0%}",
            {True: "yes", False: "no", None: "-"}[p.covered],
        ]
        for p in outcome.points
    ]
    headers = ["progress", "ended", "forecast p50", "80% interval", "actual", "error", "inside"]
    title = (
        f"sweep {sweep_id}: time to finish, forecast from what was known then "
        f"({outcome.trials} trials, {outcome.slots} slots, {outcome.wall_s:.1f}s in all)"
    )
    output.table(headers, rows, title=title)


@click.command()
@click.argument("sweep_id", metavar="SWEEP_ID|latest")
@click.option(
    "--pruner",
    metavar="median|asha|hyperband",
    help="The Optuna pruner to replay, as `sweep STEP --pruner` builds it.",
)
@click.option(
    "--forecast",
    is_flag=True,
    help="Replay the sweep's forecast instead: its error at 10/25/50%% progress.",
)
@click.option("--json", "as_json", is_flag=True, help="The replay as one JSON object.")
@config_option
@store_option
def replay(
    sweep_id: str,
    pruner: str | None,
    forecast: bool,
    as_json: bool,
    config_path: str | None,
    store: str | None,
) -> None:
    """Replay a finished sweep's recorded metric curves under a pruner, without running anything.

    Shows the trials it would have stopped and at which step (report number), the compute it
    would have saved, whether the best trial survives, and Spearman's rank correlation between
    the replay's ranking (pruned trials by their last value seen) and the recorded one.
    With --forecast instead: the sweep replayed in the order it ran, its time to finish
    forecast at 10%, 25% and 50% of its trials ended from what was known then, against the
    time it actually still ran.
    """
    if (pruner is None) == (not forecast):
        raise SweeperError("sweep replay needs one of --pruner NAME or --forecast")
    results = _results(config_path, store)
    if sweep_id == "latest":
        sweep_id = _latest_sweep_id(results)
    if forecast:
        _forecast_replay(results, sweep_id, as_json)
        return
    assert pruner is not None
    outcome = results.replay(sweep_id, pruner=pruner)
    if as_json:
        click.echo(json.dumps(outcome.to_dict()))
        return
    _replay_table(outcome)
    rho = outcome.rank_correlation
    survived = {True: "survives", False: "would have been PRUNED", None: "not replayed"}
    click.echo(
        f"pruned {len(outcome.pruned)} of {len(outcome.trials)} trials; saved "
        f"{_seconds(outcome.saved_s)} of {_seconds(outcome.total_s)} execution time "
        f"({outcome.saved_percent:.1f}%); best trial {survived[outcome.best_survived]}; "
        f"Spearman rank correlation {'n/a' if rho is None else f'{rho:.3f}'}"
        + (f"; {outcome.skipped} executions not replayed" if outcome.skipped else "")
    )
    click.echo(f"({outcome.time_estimate})", err=True)


@click.command()
@click.option(
    "--dataset", help="Only this dataset (executions, metrics, artifacts, sweeps, pipeline_runs)."
)
@config_option
@store_option
def compact(dataset: str | None, config_path: str | None, store: str | None) -> None:
    """Merge small Parquet parts into one, without changing what readers see."""
    merged = project_from(config_path, store).open_store().compact(dataset)
    click.echo(f"merged {merged} part files")


@click.command()
@click.option("--quarantine", is_flag=True, help="Move damaged part files to quarantine/.")
@config_option
@store_option
def doctor(quarantine: bool, config_path: str | None, store: str | None) -> None:
    """List damaged (truncated or corrupt) part files; exit 1 when there are any."""
    damaged = project_from(config_path, store).open_store().doctor(quarantine=quarantine)
    for path in damaged:
        click.echo(f"{path}: damaged" + (" (quarantined)" if quarantine else ""))
    if damaged and not quarantine:
        sys.exit(1)
    if not damaged:
        click.echo("store ok", err=True)


@click.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="The versions as one JSON list.")
@config_option
@store_option
def datasets(name: str | None, as_json: bool, config_path: str | None, store: str | None) -> None:
    """List dataset versions: files, sizes, the execution that made each and those that used it.

    With NAME, only that dataset's versions, each with its files.
    """
    versions = _results(config_path, store).datasets(name)
    if as_json:
        click.echo(json.dumps(versions))
        return
    rows = [
        [
            v["uri"],
            str(len(v["files"])),
            str(v["size"]),
            v["made_by"],
            v["created_at"] or "",
            ", ".join(v["used_by"]),
        ]
        for v in versions
    ]
    output.table(["version", "files", "bytes", "made by", "created", "used by"], rows)
    if name is not None:
        files = [
            [v["uri"], f["path"], str(f["size"]), f["sha256"]] for v in versions for f in v["files"]
        ]
        output.table(["version", "path", "bytes", "sha256"], files)


COMMANDS = [ls, compare, lineage, plot, replay, compact, doctor, datasets]
