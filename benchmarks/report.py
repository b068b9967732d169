"""The Markdown table and the JSON document of a benchmark run."""

from __future__ import annotations

import json
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil

from benchmarks.cases.base import CaseResult, fmt

#: Extras shown in a case table's "details" column, with their display names.
DETAILS = {
    "over_floor_ms_per_trial": "over floor ms/trial",
    "loop_over_floor_ms_per_trial": "loop over floor ms/trial",
    "ray_init_s": "ray init s",
    "loop_s": "loop s",
    "efficiency_end_to_end": "efficiency e2e",
    "efficiency_loop": "efficiency loop",
    "first_ms_per_trial": "first 10% ms/trial",
    "last_ms_per_trial": "last 10% ms/trial",
    "first_run_ms": "first run ms",
    "last_run_ms": "last run ms",
    "first_between_ms": "first between ms",
    "last_between_ms": "last between ms",
    "last_over_first": "last/first",
    "slot_idle_s": "slot idle s",
    "slot_idle_ms_per_trial": "slot idle ms/trial",
    "ls_s": "ls s",
    "best_s": "best() s",
    "parts": "parts",
    "best": "best",
    "best_per_seed": "per seed",
    "append_first_ms": "append first 1k ms",
    "append_last_ms": "append last 1k ms",
    "query_api_s": "query s",
    "query_cli_s": "sweep ls s",
    "compact_s": "compact s",
    "parts_removed_by_compact": "parts compacted",
    "query_api_compacted_s": "query compacted s",
    "query_cli_compacted_s": "sweep ls compacted s",
    "trials_done": "trials",
    "cpu_s": "cpu s",
    "modules": "modules",
    "rps": "req/s",
    "rps_vs_direct": "x direct req/s",
    "p50_ms": "p50 ms",
    "p99_ms": "p99 ms",
    "p50_added_ms": "p50 added ms",
    "loaded_p50_ms": "loaded p50 ms",
    "loaded_p99_ms": "loaded p99 ms",
    "errors": "errors",
    "deploys_s": "deploys s",
    "requests": "requests",
    "failed": "failed",
    "answers": "distinct answers",
}


def machine() -> dict[str, Any]:
    """The machine the benchmarks ran on."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    docker = None
    try:
        docker = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "cpus": psutil.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "docker": docker,
        "versions": _versions(),
    }


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("sweeper", "ray", "optuna", "pyarrow", "scikit-learn"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def _value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    if isinstance(value, dict):
        return "/".join(f"{k} {_value(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_value(v) for v in value)
    return str(value)


def _details(extra: dict[str, Any]) -> str:
    return "; ".join(
        f"{label} {_value(extra[key])}"
        for key, label in DETAILS.items()
        if key in extra and extra[key] is not None
    )


def _met(met: bool | None) -> str:
    return "n/a" if met is None else ("yes" if met else "**no**")


def markdown(cases: list[CaseResult], info: dict[str, Any], quick: bool) -> str:
    """The report: machine, goals, then one table per case."""
    lines = [
        f"# sweeper benchmarks ({'quick' if quick else 'full'})",
        "",
        f"{info['started']} on {info['machine']['cpus']} CPUs ({info['machine']['cpu_model']}), "
        f"{info['machine']['memory_gb']} GB, Python {info['machine']['python']}, "
        + ", ".join(f"{k} {v}" for k, v in info["machine"]["versions"].items())
        + f"; total {info['elapsed_s']:.0f} s.",
        "",
        "## Goals",
        "",
        "| case | goal | measured | met? |",
        "|---|---|---|---|",
    ]
    for case in cases:
        for goal in case.goals:
            lines.append(f"| {case.name} | {goal.goal} | {goal.measured} | {_met(goal.met)} |")
    for case in cases:
        lines += [
            "",
            f"## {case.title}",
            "",
            case.description,
            "",
            "| contender | wall s | ms/trial | peak tree MB | peak driver MB | vs floor | vs sweeper | details |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for row in case.rows:
            lines.append(
                f"| {row.contender} | {fmt(row.wall_s)} | {fmt(row.per_trial_ms, 1)} | {fmt(row.peak_tree_mb, 0)} "
                f"| {fmt(row.peak_driver_mb, 0)} | {fmt(row.vs_floor)} | {fmt(row.vs_sweeper)} | {_details(row.extra)} |"
            )
        for note in case.notes:
            lines += ["", f"- {note}"]
        lines += ["", f"_case took {case.elapsed_s:.0f} s_"]
    return "\n".join(lines) + "\n"


def write(
    cases: list[CaseResult], info: dict[str, Any], quick: bool, folder: Path
) -> tuple[str, Path, Path]:
    """Write latest.md and latest.json into ``folder``; return (markdown, md path, json path)."""
    folder.mkdir(parents=True, exist_ok=True)
    text = markdown(cases, info, quick)
    md_path, json_path = folder / "latest.md", folder / "latest.json"
    md_path.write_text(text)
    document = {"mode": "quick" if quick else "full", **info, "cases": [c.to_dict() for c in cases]}
    json_path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return text, md_path, json_path


def now() -> str:
    """The current UTC time, for the report header."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
