"""Commands about sweeps: sweep, resume, status, submit, jobs."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import click

from sweeper.cli import output
from sweeper.cli.commands_status import (
    print_failures,
    print_forecast,
    print_warm_start,
    reused_text,
    status,
)
from sweeper.cli.forecast_options import FORECAST_OPTIONS, budget_options, forecast_kwargs
from sweeper.cli.options import (
    config_option,
    env_option,
    pull_option,
    runtime_option,
    store_option,
)
from sweeper.cli.project import project_from
from sweeper.errors import SweeperError
from sweeper.sweep.choices import PRUNERS, SAMPLERS

if TYPE_CHECKING:
    from sweeper.sweep.plan import SweepPlan
    from sweeper.sweep.policy import Progress
    from sweeper.sweep.result import SweepResult

# The sweep engine (Ray, Optuna) is imported by the commands that sweep; `status` needs only
# Optuna's study and the store.

SPACE_HELP = """Sweep STEP: run N trials, Optuna suggesting parameters, each trial one execution on a
Ray actor that holds the step's CPUs/GPUs.

\b
Search space (-p, repeatable; CLI specs win over --task, which wins over the step):
  -p lr=log:1e-5..1e-1      float range on a log scale
  -p dropout=0.1..0.5       float range (float:0..1:0.1 adds a step)
  -p layers=int:1..4        integer range (logint:8..512 on a log scale)
  -p act=relu,tanh          one of these values
  -p epochs=5               a fixed value
Without -p and --task: float/integer parameters with min and max become ranges (log
scale when min > 0 and max/min >= 100), choices and flags become categorical, the
rest stay at their defaults.

\b
Examples:
  sweep train-model --trials 50 --metric accuracy --direction maximize
  sweep train-model --task tune-learning-rate
  sweep train-model --trials 200 --parallel 4 -p learning_rate=log:1e-4..1 --sampler tpe
"""


#: The options of ``sweep STEP``, in the order ``--help`` lists them.
SWEEP_OPTIONS: list[Callable[..., Any]] = [
    click.option(
        "--trials", type=int, help="How many trials to finish (a grid defaults to its size)."
    ),
    click.option(
        "--parallel", type=int, help="Trials in flight at once (default: as many as fit)."
    ),
    click.option(
        "--metric",
        "metrics",
        multiple=True,
        help="The metric to optimize (repeat for multi-objective).",
    ),
    click.option(
        "--direction",
        "directions",
        multiple=True,
        type=click.Choice(["minimize", "maximize"]),
        help="One per --metric (default: minimize for *loss*/*error*, else maximize).",
    ),
    click.option(
        "--sampler",
        type=click.Choice(SAMPLERS),
        help="Optuna sampler (default tpe; grid for a grid task).",
    ),
    click.option(
        "--pruner",
        type=click.Choice(PRUNERS),
        default="none",
        show_default=True,
        help="Stop unpromising trials early.",
    ),
    click.option("--seed", type=int, help="Seed the sampler: same suggestions in the same order."),
    click.option(
        "--reproducible/--free-order",
        default=None,
        help="Reproducible: results told in trial order, so a seeded parallel sweep proposes "
        "the same parameters however the trials' timing falls (default with --seed). "
        "Free order: told as they finish (no slot waits).",
    ),
    click.option(
        "-p",
        "--parameter",
        "params",
        multiple=True,
        metavar="NAME=VALUE|NAME=SPACE",
        help="A fixed value or a search space (see above).",
    ),
    click.option("--task", help="Use a valohai.yaml task block as the search space."),
    click.option(
        "--gpus-per-trial", type=float, help="GPUs each trial reserves (0.5 packs two per GPU)."
    ),
    click.option(
        "--cpus-per-trial",
        type=float,
        help="CPUs each trial reserves (default: the step's resources.cpu, else 1).",
    ),
    runtime_option("Run trials as local processes or in the step's Docker image."),
    pull_option,
    click.option(
        "--input",
        "inputs",
        multiple=True,
        metavar="NAME=URI",
        help="An input URI for every trial.",
    ),
    env_option("An environment variable for every trial."),
    click.option(
        "--address",
        help="Ray cluster: auto, HOST:PORT or ray://HOST:PORT (default: embedded local Ray).",
    ),
    click.option(
        "--storage",
        help="Optuna storage URL for the study (default: a journal file in the store).",
    ),
    click.option(
        "--reuse",
        is_flag=True,
        help="Answer a trial identical to a completed execution from the store "
        "(no slot, no process; told to the sampler).",
    ),
    click.option(
        "--warm-start",
        "warm_start",
        multiple=True,
        metavar="SWEEP_ID|latest|step",
        help="Seed the study with the complete trials of an earlier sweep of this step "
        "that fit the space (latest: the newest one; step: all; repeatable).",
    ),
    click.option(
        "--max-failures", type=int, help="Stop the sweep after more than F failed trials."
    ),
    click.option(
        "--max-retries",
        type=int,
        default=2,
        show_default=True,
        help="Retries of a trial after an infrastructure failure.",
    ),
    click.option(
        "--fresh-actors",
        is_flag=True,
        help="A new Ray actor per trial instead of reusing actors.",
    ),
    *FORECAST_OPTIONS,
    click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print only the final summary as JSON on stdout.",
    ),
    config_option,
    store_option,
]


def _sweep_options(func: Any) -> Any:
    """Decorate ``func`` with :data:`SWEEP_OPTIONS`."""
    for option in reversed(SWEEP_OPTIONS):
        func = option(func)
    return func


def _sweep_and_print(call: Callable[..., SweepResult], *, as_json: bool, **kw: Any) -> NoReturn:
    """Call :func:`sweeper.api.run_sweep`/``resume_sweep`` with a live progress bar, print
    the summary and exit 0 when a trial completed."""
    prepared: list[SweepPlan] = []
    with contextlib.ExitStack() as stack:
        if as_json:
            # stdout is for the summary alone; Ray's driver prints cluster events there
            # (`(raylet) The node ... has been marked dead`), so they go to stderr
            stack.enter_context(contextlib.redirect_stdout(sys.stderr))
        progress: list[output.SweepProgress] = []

        def on_start(plan: SweepPlan) -> None:
            prepared.append(plan)
            _print_header(plan, as_json=as_json)
            progress.append(stack.enter_context(output.SweepProgress(plan.trials)))

        def on_progress(state: Progress) -> None:
            progress[0].update(state.done, state.counts, state.best_value, state.forecast)

        result = call(on_start=on_start, on_progress=on_progress, **kw)
    if as_json:
        click.echo(json.dumps(result.to_dict(), default=str))
    else:
        _print_results(prepared[0], result)
    if result.failure:
        raise SweeperError(result.failure)
    sys.exit(0 if result.counts["complete"] else 1)


def _print_header(plan: SweepPlan, *, as_json: bool) -> None:
    """What is swept: the objective note, then the search space (one line with --json)."""
    if plan.objective_note:
        output.stderr.print(f"sweep: {plan.objective_note}", highlight=False)
    if not as_json:
        output.table(
            ["parameter", "space"],
            plan.space.describe(),
            title=f"sweep {plan.sweep_id} of {plan.step.name}: {plan.trials} trials, {plan.sampler}, {plan.objective}",
            console=output.stderr,
        )
    else:
        space = "; ".join(f"{name} {what}" for name, what in plan.space.describe())
        output.stderr.print(f"sweep {plan.sweep_id} of {plan.step.name}: {space}", highlight=False)


#: How many of a ranked sweep's complete trials the end-of-sweep table shows (best first).
TOP_TRIALS = 10


def _print_results(plan: SweepPlan, result: SweepResult) -> None:
    """The top trials, the counts, the warm start, the failures and the best."""
    metrics = list(plan.metrics)
    complete = list(result.complete)
    if metrics:
        first = metrics[0]
        complete.sort(key=lambda t: t.values[first], reverse=plan.directions[0] == "maximize")
        complete = complete[:TOP_TRIALS]
    names = sorted({k for t in complete for k in t.parameters})
    rows = [
        [
            t.trial_number,
            t.execution_id,
            *[output.format_value(t.values[m]) for m in metrics],
            *[output.format_value(t.parameters.get(n)) for n in names],
        ]
        for t in complete
    ]
    title = "top trials" if metrics else "trials (unranked: no metric)"
    output.table(["trial", "execution", *metrics, *names], rows, title=title)
    counts = result.counts
    click.echo(
        f"sweep {result.sweep_id}: {counts['complete']} complete{reused_text(result)}, {counts['error']} failed, {counts['pruned']} pruned"
    )
    print_warm_start(result, indent="")
    click.echo(result.resources.describe())
    print_forecast(result, indent="")
    print_failures(result, indent="")
    best = result.best
    if isinstance(best, tuple):
        click.echo(f"Pareto front: {len(best)} trials")
    elif best is not None:
        click.echo(
            f"best: {output.format_value(best.value)} (trial {best.trial_number}, execution {best.execution_id})"
        )
        click.echo("best parameters: " + json.dumps(dict(best.parameters), default=str))


@click.command(name="sweep", help=SPACE_HELP)
@click.argument("step")
@_sweep_options
def sweep_command(step: str, **kw: Any) -> None:
    """``sweep STEP ...``: a sweep of one step (:func:`sweeper.run_sweep`), its summary shown."""
    from sweeper import api
    from sweeper.execution.spec import parse_assignments

    if kw["task"] and api.is_distributed_task(
        kw["task"], config=kw["config_path"] or "valohai.yaml"
    ):
        from sweeper.cli.commands_distributed import group_and_print

        group_and_print(step, kw)
    _sweep_and_print(
        api.run_sweep,
        as_json=kw["as_json"],
        step=step,
        trials=kw["trials"],
        config=kw["config_path"] or "valohai.yaml",
        store=kw["store"],
        parallel=kw["parallel"],
        metrics=list(kw["metrics"]),
        directions=list(kw["directions"]),
        sampler=kw["sampler"],
        pruner=kw["pruner"],
        seed=kw["seed"],
        reproducible=kw["reproducible"],
        specs=parse_assignments(kw["params"], "-p"),
        task=kw["task"],
        gpus_per_trial=kw["gpus_per_trial"],
        cpus_per_trial=kw["cpus_per_trial"],
        runtime=kw["runtime"],
        address=kw["address"],
        storage=kw["storage"],
        reuse=kw["reuse"],
        warm_start=list(kw["warm_start"]),
        max_failures=kw["max_failures"],
        max_retries=kw["max_retries"],
        fresh_actors=kw["fresh_actors"],
        inputs=parse_assignments(kw["inputs"], "--input"),
        environment={k: v[-1] for k, v in parse_assignments(kw["env"], "-e").items()},
        pull_policy=kw["pull_policy"],
        **forecast_kwargs(kw),
    )


@click.command()
@click.argument("sweep_id", required=False)
@click.option("--address", help="Ray cluster to resume on (default: the one it was started with).")
@env_option("A secret variable the sweep was started with (secret values are not saved).")
@budget_options
@click.option(
    "--json", "as_json", is_flag=True, help="Print only the final summary as JSON on stdout."
)
@config_option
@store_option
def resume(
    sweep_id: str | None,
    address: str | None,
    env: tuple[str, ...],
    as_json: bool,
    config_path: str | None,
    store: str | None,
    **budgets: Any,
) -> None:
    """Continue a sweep to exactly its number of trials (default: the latest unfinished one)."""
    from sweeper import api
    from sweeper.execution.spec import parse_assignments

    _sweep_and_print(
        api.resume_sweep,
        as_json=as_json,
        sweep_id=sweep_id,
        address=address,
        environment={k: v[-1] for k, v in parse_assignments(env, "-e").items()},
        config=config_path or "valohai.yaml",
        store=store,
        budgets=forecast_kwargs(budgets),
    )


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--address", required=True, help="The Ray dashboard address, e.g. http://HEAD:8265.")
@click.option(
    "--follow",
    is_flag=True,
    help="Stream the job's logs; exit with the job's result (and pull a head-kept store).",
)
@click.option(
    "--python",
    "python",
    metavar="PATH",
    help="The Python on the head that has sweeper installed (default: `sweep` on the "
    "head's PATH, else python3).",
)
@config_option
@click.argument("args", nargs=-1, type=click.UNPROCESSED, required=True)
def submit(
    address: str, follow: bool, python: str | None, config_path: str | None, args: tuple[str, ...]
) -> None:
    """Submit `sweep ARGS...` as a Ray job with the project folder as its working directory.

    The job runs on the head and joins its cluster (Ray sets RAY_ADDRESS for it). Without
    --store in ARGS the job records into ~/.sweeper/jobs/JOB_ID/store on the head, and
    `sweep jobs pull JOB_ID` (or --follow, at the end) brings it into the local store;
    with --store s3://... the results are simply there.

    \b
    sweep submit --address http://HEAD:8265 --follow -- train-model --trials 200
    """
    from sweeper.cluster import jobs as cluster_jobs

    project = project_from(config_path, None)
    _ = project.config  # a missing or broken valohai.yaml fails here, not in the job
    command = list(args)
    if project.config_path.name != "valohai.yaml" and not any(
        a in ("-f", "--config") or a.startswith("--config=") for a in command
    ):
        command += ["--config", project.config_path.name]
    job_id = cluster_jobs.submit_sweep(project.directory, command, address=address, python=python)
    click.echo(job_id)
    kept = None if cluster_jobs.has_store(command) else cluster_jobs.head_store(job_id)
    if kept:
        click.echo(
            f"sweep: the job records into {kept} on the head; "
            f"`sweep jobs pull {job_id} --address {address}` brings it here"
            + (" (--follow does at the end)" if follow else ""),
            err=True,
        )
    if not follow:
        return
    succeeded = _follow(address, job_id)
    if kept:
        _pull(address, job_id, config_path, None, python)
    sys.exit(0 if succeeded else 1)


def _follow(address: str, job_id: str) -> bool:
    """Stream a submitted job's logs until it ends; whether it succeeded (Ctrl-C: exit 130)."""
    from sweeper.cluster import jobs as cluster_jobs

    def write(lines: str) -> None:
        sys.stdout.write(lines)
        sys.stdout.flush()

    try:
        ended = cluster_jobs.follow(
            address, job_id, write, warn=lambda m: click.echo(f"sweep: warning: {m}", err=True)
        )
    except KeyboardInterrupt:
        click.echo(
            f"sweep: the job {job_id} keeps running: `sweep jobs --address {address}` shows it, "
            f"`ray job stop --address {address} {job_id}` stops it",
            err=True,
        )
        sys.exit(130)
    reasons = (ended.message or "").strip().splitlines()
    detail = f": {reasons[0]}" if not ended.succeeded and reasons else ""
    click.echo(f"job {job_id}: {ended.status}{detail}", err=True)
    return bool(ended.succeeded)


def _pull(
    address: str, job_id: str, config_path: str | None, store: str | None, python: str | None
) -> None:
    """Pull a job's head-kept store into the local one; one line says what came."""
    from sweeper.cluster.pull import pull

    local = project_from(config_path, store).open_store(create=True)
    pulled = pull(
        address,
        job_id,
        local,
        python=python,
        status=lambda line: click.echo(f"sweep: {line}", err=True),
    )
    click.echo(f"sweep: {pulled.describe()} into {local.location}", err=True)


@click.group(invoke_without_command=True)
@click.option("--address", help="The Ray dashboard address, e.g. http://HEAD:8265.")
@click.option("--json", "as_json", is_flag=True, help="Print the jobs as JSON.")
@click.pass_context
def jobs(ctx: click.Context, address: str | None, as_json: bool) -> None:
    """List the Ray jobs of a cluster, oldest first (sweeps as `sweep ARGS`).

    `sweep jobs pull JOB_ID` brings the results a job kept on the head into the local store.
    """
    ctx.obj = {"address": address}
    if ctx.invoked_subcommand is not None:
        return
    if not address:
        raise SweeperError("give the Ray dashboard address: sweep jobs --address http://HEAD:8265")
    from sweeper.cluster.jobs import list_jobs

    listed = list_jobs(address)
    if as_json:
        click.echo(json.dumps([job.to_dict() for job in listed]))
    else:
        output.table(
            ["job", "status", "started", "entrypoint"],
            [[j.job_id, j.status, j.started_at or "-", j.entrypoint] for j in listed],
        )


@jobs.command(name="pull")
@click.argument("job_id")
@click.option("--address", help="The Ray dashboard address, e.g. http://HEAD:8265.")
@click.option(
    "--python",
    "python",
    metavar="PATH",
    help="The Python on the head that has sweeper installed (default: the job's).",
)
@config_option
@store_option
@click.pass_context
def jobs_pull(
    ctx: click.Context,
    job_id: str,
    address: str | None,
    python: str | None,
    config_path: str | None,
    store: str | None,
) -> None:
    """Bring the store a submitted job kept on the head into the local store.

    For jobs submitted without --store; pulling twice adds nothing new.

    \b
    sweep jobs pull raysubmit_XzY... --address http://HEAD:8265
    """
    address = address or (ctx.obj or {}).get("address")
    if not address:
        raise SweeperError(
            f"give the Ray dashboard address: sweep jobs pull {job_id} --address http://HEAD:8265"
        )
    _pull(address, job_id, config_path, store, python)


@jobs.command(name="pack", hidden=True)
@click.argument("store_dir")
@click.option("--name", required=True)
def jobs_pack(store_dir: str, name: str) -> None:
    """Runs on the head for `sweep jobs pull`: pack a store, keep it until stopped."""
    from sweeper.cluster.pull import serve_pack

    serve_pack(store_dir, name)


COMMANDS = [sweep_command, resume, status, submit, jobs]
