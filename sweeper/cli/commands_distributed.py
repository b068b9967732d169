"""``sweep STEP --task NAME`` for a distributed task: the group run, its summary printed."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

from sweeper.cli import output
from sweeper.errors import SweeperError

if TYPE_CHECKING:
    from sweeper.sweep.distributed import GroupPlan, GroupResult


def group_and_print(step: str, kw: dict[str, Any]) -> NoReturn:
    """Run the distributed task ``kw["task"]`` of ``step`` (:func:`sweeper.run_group`), print
    its summary (``--json``: the :meth:`GroupResult.to_dict`), exit 0 when every member
    completed."""
    from sweeper import api
    from sweeper.execution.spec import parse_assignments

    _refuse_sweep_only(kw["task"])
    as_json = kw["as_json"]
    with contextlib.ExitStack() as stack:
        if as_json:  # stdout is for the summary alone (Ray's driver prints there)
            stack.enter_context(contextlib.redirect_stdout(sys.stderr))
        # the sweep options that apply to one group, named as run_group takes them
        taken = ("gpus_per_trial", "cpus_per_trial", "runtime", "address", "pull_policy")
        result = api.run_group(
            step,
            task=kw["task"],
            config=kw["config_path"] or "valohai.yaml",
            store=kw["store"],
            on_start=_print_start,
            specs=parse_assignments(kw["params"], "-p"),
            inputs=parse_assignments(kw["inputs"], "--input"),
            environment={k: v[-1] for k, v in parse_assignments(kw["env"], "-e").items()},
            **{name: kw[name] for name in taken},
        )
    if as_json:
        click.echo(json.dumps(result.to_dict(), default=str))
    else:
        _print_result(result)
    sys.exit(0 if result.status == "complete" else 1)


#: The options of a search that a distributed task has no use for: it runs its members once.
SWEEP_ONLY = (
    "trials", "parallel", "metrics", "directions", "sampler", "pruner", "seed", "reproducible",
    "storage", "reuse", "warm_start", "max_failures", "max_retries", "fresh_actors",
)  # fmt: skip


def _refuse_sweep_only(task: str) -> None:
    """One error naming the search options given for a distributed task, which would
    otherwise be ignored without a word."""
    ctx = click.get_current_context()
    given = [
        "/".join([param.opts[0], *param.secondary_opts])
        for param in ctx.command.params
        if param.name in SWEEP_ONLY
        and ctx.get_parameter_source(param.name) is not click.core.ParameterSource.DEFAULT
    ]
    if given:
        raise SweeperError(
            f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to the "
            f'distributed task "{task}": a distributed task runs its members once, together '
            "(one group, not a sweep of trials), so there is nothing to search, retry or "
            "reuse; drop " + ("it" if len(given) == 1 else "them")
        )


def _print_start(plan: GroupPlan) -> None:
    output.stderr.print(
        f"distributed task {plan.task} of {plan.step}: group {plan.group_id}, "
        f"{plan.size} members, placed and started together",
        highlight=False,
    )


def _print_result(result: GroupResult) -> None:
    rows = [
        [r.member_id, r.id, r.status.value, r.ray_node or "", r.error or ""] for r in result.members
    ]
    output.table(["member", "execution", "status", "ray node", "error"], rows, title="members")
    done = sum(1 for r in result.members if r.status == "complete")
    click.echo(f"group {result.group_id}: {result.status.value}, {done} of {len(rows)} complete")
    failed = result.first_failure
    if failed is not None:
        click.echo(
            f"member {failed.member_id} (execution {failed.id}) failed first: {failed.error}"
        )


__all__ = ["group_and_print"]
