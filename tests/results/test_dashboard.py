"""`sweep dashboard`: optuna-dashboard served live on a sweep's own study storage."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from sweeper.cli.commands_dashboard import dashboard, make_app, serve, sweep_storage
from sweeper.errors import SweeperError
from sweeper.store import Store
from tests.coload import cpu_load
from tests.conftest import sweep_cli
from tests.requirements import require_chromium

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]

#: How soon the dashboard must be gone after SIGINT or SIGTERM, on a busy machine too.
STOP_WITHIN_S = 3.0


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _invoke(args: list[str]) -> BaseException | None:
    """Run the click command in this process; return the exception it ended with, if any."""
    result = CliRunner().invoke(dashboard, args)
    return result.exception


def test_without_optuna_dashboard_it_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The extra is optional: a missing optuna-dashboard is a SweeperError with the pip line."""
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # makes the import fail
    Store.open(tmp_path / "store", create=True)
    error = _invoke(["--store", str(tmp_path / "store")])
    assert isinstance(error, SweeperError)
    assert "pip install 'sweeper[dashboard]'" in str(error)


def test_unknown_or_missing_sweeps_are_user_errors(tmp_path: Path) -> None:
    """An unknown sweep id, or no sweep at all, ends as a SweeperError naming the store."""
    store = str(Store.open(tmp_path / "store", create=True).location)
    error = _invoke(["NO-SUCH-SWEEP", "--store", store])
    assert isinstance(error, SweeperError) and 'unknown sweep "NO-SUCH-SWEEP"' in str(error)
    error = _invoke(["--store", store])
    assert isinstance(error, SweeperError) and "no sweep in the store" in str(error)
    assert not (tmp_path / "store" / "sweeps" / "NO-SUCH-SWEEP").exists()


def test_a_sweep_with_a_database_url_is_served_from_that_database(tmp_path: Path) -> None:
    """A sweep started with --storage URL: the dashboard reads that database, not a journal."""
    import optuna

    store = Store.open(tmp_path / "store", create=True)
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="db-sweep", storage=url)
    study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=3)
    store.write_json(
        "sweeps/db-sweep/sweep.json", {"sweep_id": "db-sweep", "options": {"storage": url}}
    )

    storage = sweep_storage(store, "db-sweep")
    assert storage == url
    assert not (tmp_path / "store" / "sweeps" / "db-sweep" / "optuna.journal").exists()
    server = serve(make_app(storage), 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        (summary,) = _get_json(f"{base}/api/studies")["study_summaries"]
        assert summary["study_name"] == "db-sweep"
        detail = _get_json(f"{base}/api/studies/{summary['study_id']}")
        assert len(detail["trials"]) == 3
    finally:
        server.shutdown()
        server.server_close()


def test_it_is_registered_as_sweep_dashboard() -> None:
    """`sweep dashboard` is a subcommand of the `sweep` CLI (sweeper/cli/main.py)."""
    import click

    from sweeper.cli.main import cli

    assert cli.get_command(click.Context(cli), "dashboard") is dashboard


class _Dashboard:
    """The dashboard command in a subprocess, its stdout read by a thread: ``python -m
    sweeper.cli.commands_dashboard ARGS``, or ``sweep dashboard ARGS`` with ``as_sweep``."""

    def __init__(self, args: list[str], cwd: Path, *, as_sweep: bool = False) -> None:
        command = (
            ["sweeper.cli.main", "dashboard"] if as_sweep else ["sweeper.cli.commands_dashboard"]
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *command, *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def line(self, timeout: float = 60) -> str:
        try:
            return self.lines.get(timeout=timeout).strip()
        except queue.Empty:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise AssertionError(f"sweep dashboard printed nothing in {timeout}s:\n{err}") from None


@pytest.mark.ray
@pytest.mark.slow
def test_the_dashboard_shows_a_real_sweep_live_in_a_browser(
    example_project: Path, tmp_path: Path
) -> None:
    """Sweep the example, serve its study, render the page in headless Chromium, watch a new
    trial appear without a restart, and stop on Ctrl-C."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    chromium = require_chromium()
    store = example_project / ".sweeper"
    proc = sweep_cli(
        *("train-model", "--trials", "4", "--runtime", "local", "--metric", "loss", "--json"),
        *("--store", str(store)),
        cwd=example_project,
        timeout=240,
        check=True,
    )
    sweep_id = json.loads(proc.stdout)["sweep_id"]

    server = _Dashboard(["--port", "0", "--store", str(store)], cwd=example_project)
    try:
        assert server.line() == f"sweep {sweep_id}: optuna-dashboard on its journal in the store"
        page = server.line()
        base, _, path = page.partition("/dashboard")
        assert base.startswith("http://127.0.0.1:") and path.startswith("/studies/"), page

        # the JSON API behind the page lists the sweep's study (the latest sweep by default)
        (summary,) = _get_json(f"{base}/api/studies")["study_summaries"]
        assert summary["study_name"] == sweep_id and summary["directions"] == ["minimize"]
        assert path == f"/studies/{summary['study_id']}"

        # the page, rendered by its JavaScript in a real browser, shows the study
        dom = ""
        for attempt in range(2):
            dom = subprocess.run(
                [
                    chromium,
                    *CHROMIUM_FLAGS,
                    f"--user-data-dir={tmp_path / f'chromium-{attempt}'}",
                    "--virtual-time-budget=10000",
                    "--dump-dom",
                    page,
                ],
                capture_output=True,
                text=True,
                timeout=90,
            ).stdout
            if sweep_id in dom:
                break
        (tmp_path / "dom.html").write_text(dom)
        assert sweep_id in dom, f"the study is not on the rendered page ({len(dom)} chars)"
        for text in ("History", "Hyperparameter Importance", "learning_rate"):
            assert text in dom, f"{text!r} is not on the rendered page"

        # live: a trial the sweep's writer adds to the journal shows up without a restart
        journal = store / "sweeps" / sweep_id / "optuna.journal"
        study = optuna.load_study(
            study_name=sweep_id, storage=JournalStorage(JournalFileBackend(str(journal)))
        )
        before = len(study.trials)
        assert before == 4
        study.add_trial(optuna.trial.create_trial(value=0.123, params={}, distributions={}))
        deadline, trials = time.monotonic() + 120, before  # waits for the page's data
        while time.monotonic() < deadline and trials == before:
            time.sleep(0.5)
            trials = len(_get_json(f"{base}/api/studies/{summary['study_id']}")["trials"])
        assert trials == before + 1

        started = time.monotonic()
        server.proc.send_signal(signal.SIGINT)
        assert server.proc.wait(timeout=60) == 0
        assert time.monotonic() - started < STOP_WITHIN_S
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


def _get_quietly(url: str) -> None:
    """A request the page makes, which the stopping server may cut short."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            response.read()
    except OSError:
        pass


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_sweep_dashboard_stops_at_once_on_a_signal(tmp_path: Path, stop: str) -> None:
    """`sweep dashboard`, the command: it serves the latest sweep's study, and on Ctrl-C or
    SIGTERM, requests still in flight, closes its server and storage and exits 0 within
    seconds, on a busy machine."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    store = Store.open(tmp_path / "store", create=True)
    store.put_sweep("s1", {"sweep_id": "s1", "step": "train", "options": {}})
    study = optuna.create_study(
        study_name="s1",
        storage=JournalStorage(JournalFileBackend(str(store.sweep_journal("s1")))),
    )
    study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2 + t.suggest_int("n", 0, 9), 30)

    with cpu_load(2):
        server = _Dashboard(
            ["--port", "0", "--store", str(tmp_path / "store")], tmp_path, as_sweep=True
        )
        try:
            assert server.line() == "sweep s1: optuna-dashboard on its journal in the store"
            base, _, path = server.line().partition("/dashboard")
            (summary,) = _get_json(f"{base}/api/studies")["study_summaries"]
            assert summary["study_name"] == "s1" and path == f"/studies/{summary['study_id']}"
            study_api = f"{base}/api/studies/{summary['study_id']}"
            assert len(_get_json(study_api)["trials"]) == 30
            for url in (f"{study_api}/param_importances", study_api, f"{base}/dashboard"):
                threading.Thread(target=_get_quietly, args=(url,), daemon=True).start()
            started = time.monotonic()
            server.proc.send_signal(getattr(signal, stop))
            code = server.proc.wait(timeout=60)
            took = time.monotonic() - started
        finally:
            if server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait()
    assert server.proc.stderr is not None
    err = server.proc.stderr.read()
    assert code == 0, f"exit status {code} after {stop}: {err}"
    assert took < STOP_WITHIN_S, f"{took:.1f}s from {stop} to the end of sweep dashboard"
    assert "Traceback" not in err, err
