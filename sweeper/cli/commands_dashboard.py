"""``sweep dashboard``: optuna-dashboard served live on a sweep's own Optuna study.

The dashboard reads the study where the sweep writes it (``sweeps/<id>/optuna.journal`` in
the store, or the database URL the sweep was started with ``--storage``), so its history,
parameter importances and parallel coordinates follow a sweep while it runs. It listens on
127.0.0.1 only. optuna-dashboard is an optional extra: ``pip install 'sweeper[dashboard]'``.
"""

from __future__ import annotations

import gc
import re
import signal
import sys
import threading
from socketserver import ThreadingMixIn
from types import FrameType
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import click

from sweeper.cli.options import config_option, store_option
from sweeper.cli.project import project_from
from sweeper.errors import SweeperError

if TYPE_CHECKING:
    from sweeper.store import RecordStore

#: Where the dashboard listens: this machine only (it can tell trials and delete studies).
HOST = "127.0.0.1"

INSTALL_HINT = (
    "sweep dashboard needs optuna-dashboard, an optional extra: pip install 'sweeper[dashboard]'"
)

#: The signals that stop the dashboard: Ctrl-C, and what a service manager or `kill` sends.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Stop(BaseException):
    """A stop signal arrived: the dashboard closes its server and its storage, and exits 0.

    Not an Exception, so that no ``except Exception`` on its way (the study's loading, the
    server's error handling) takes it for an error and carries on.
    """


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    """A WSGI server that answers the page's parallel API requests in threads.

    Requests run on daemon threads, which never hold up the exit. Setting ``stop_requested``
    ends :meth:`serve_forever` at its next turn (within its poll interval) with ``_Stop``:
    between two requests, never while one is being handed to its thread.
    """

    daemon_threads = True
    allow_reuse_address = True
    stop_requested = False

    def service_actions(self) -> None:
        super().service_actions()
        if self.stop_requested:
            raise _Stop


class _QuietHandler(WSGIRequestHandler):
    """No access log line on stderr for each of the page's many polling requests."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        pass


def masked(url: str) -> str:
    """A storage URL fit to print: its password (``user:PASSWORD@``) replaced by ``***``."""
    return re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", url)


def require_dashboard() -> Any:
    """The optuna_dashboard module, or a SweeperError that says how to install it."""
    try:
        import optuna_dashboard
    except ImportError:
        raise SweeperError(INSTALL_HINT) from None
    return optuna_dashboard


def latest_sweep_id(store: RecordStore) -> str:
    """The id of the most recently created sweep in the store (any backend)."""
    sweep_id = store.latest_sweep()
    if sweep_id is None:
        raise SweeperError(f"no sweep in the store {store.location}: run one first, or name it")
    return sweep_id


def sweep_storage(store: RecordStore, sweep_id: str) -> Any:
    """The sweep's Optuna storage: its database URL (``--storage``) or its journal storage."""
    from sweeper.sweep.study import study_storage

    saved = store.get_sweep(sweep_id)
    if not saved:
        raise SweeperError(f'unknown sweep "{sweep_id}" in the store {store.location}')
    options = saved.get("options") or {}
    return study_storage(store, sweep_id, options.get("storage"))


def open_storage(storage: Any) -> Any:
    """The storage as an object the command can close: a database URL is opened as
    optuna-dashboard opens one (no schema check, no table creation); an object is kept."""
    if not isinstance(storage, str):
        return storage
    require_dashboard()
    from optuna.exceptions import OptunaError
    from optuna.storages import RDBStorage
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return RDBStorage(storage, skip_compatibility_check=True, skip_table_creation=True)
    except (ValueError, ImportError, OptunaError, SQLAlchemyError) as exc:
        raise SweeperError(
            f"optuna-dashboard cannot open the storage {masked(storage)}: {exc}"
        ) from None


def close_storage(storage: Any) -> None:
    """Close what :func:`open_storage` opened: a database's connections."""
    if storage is None:  # stopped before it was opened
        return
    from optuna.storages import RDBStorage

    if isinstance(storage, RDBStorage):
        storage.remove_session()
        storage.engine.dispose()


def make_app(storage: Any) -> Any:
    """The optuna-dashboard WSGI application over an Optuna storage (object or URL)."""
    optuna_dashboard = require_dashboard()
    try:
        return optuna_dashboard.wsgi(storage)
    except ValueError as exc:  # a storage URL optuna-dashboard cannot open
        label = masked(storage) if isinstance(storage, str) else type(storage).__name__
        raise SweeperError(f"optuna-dashboard cannot open the storage {label}: {exc}") from None


def study_url(storage: Any, sweep_id: str, base: str) -> str:
    """The dashboard page of the sweep's study; the study list for a database URL (which
    may hold other studies too) or while the study does not exist yet."""
    from optuna.storages import BaseStorage

    if isinstance(storage, BaseStorage):
        try:
            return f"{base}/dashboard/studies/{storage.get_study_id_from_name(sweep_id)}"
        except KeyError:
            pass
    return f"{base}/dashboard"


def serve(app: Any, port: int) -> _ThreadingServer:
    """Bind a threaded WSGI server for ``app`` on 127.0.0.1:``port`` (0: any free port)."""
    try:
        return make_server(
            HOST, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler
        )
    except OSError as exc:
        raise SweeperError(
            f"cannot listen on {HOST}:{port}: {exc.strerror or exc}; pick another --port"
        ) from None


@click.command()
@click.argument("sweep_id", required=False)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="The port on 127.0.0.1 (0: any free port).",
)
@config_option
@store_option
def dashboard(sweep_id: str | None, port: int, config_path: str | None, store: str | None) -> None:
    """Serve optuna-dashboard on a sweep's study, live while it runs (default: the latest sweep).

    Needs the optional extra: pip install 'sweeper[dashboard]'. Ctrl-C or SIGTERM, at any
    point, stops it: the server and the storage are closed and it exits 0.
    """
    previous = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    handles_signals = threading.current_thread() is threading.main_thread()
    running = _Running()

    def restore_signals() -> None:
        if handles_signals:
            for number, handler in previous.items():
                signal.signal(number, signal.SIG_DFL if handler is None else handler)

    def stop(number: int, frame: FrameType | None) -> None:
        restore_signals()  # a second signal does what it did before: Ctrl-C forces, TERM kills
        if running.server is None:
            raise _Stop  # still loading the study: give that up where it is
        running.server.stop_requested = True

    try:
        # Loading the study can take a while on a busy machine: a stop must end it too.
        if handles_signals:
            for number in STOP_SIGNALS:
                signal.signal(number, stop)
        _start(running, sweep_id, port, config_path, store)
        assert running.server is not None
        # What is loaded by now (optuna, SQLAlchemy, NumPy, optuna-dashboard) lives until the
        # end: frozen, the collector never walks it again, neither while serving nor at exit,
        # where that walk took seconds between a Ctrl-C and the end of the process on a busy
        # machine.
        gc.freeze()
        # Served from this thread, which sees a stop within the poll interval; nothing needs
        # shutting down from another thread.
        running.server.serve_forever(poll_interval=0.5)
    except _Stop:
        pass
    finally:
        restore_signals()
        if running.server is not None:
            running.server.server_close()
        close_storage(running.storage)


class _Running:
    """What a running dashboard holds, for its stop and its clean-up."""

    server: _ThreadingServer | None = None
    storage: Any = None


def _start(
    running: _Running, sweep_id: str | None, port: int, config_path: str | None, store: str | None
) -> None:
    """Open the sweep's study storage and bind the server (into ``running``), then say where."""
    require_dashboard()
    opened = project_from(config_path, store).open_store()
    sweep_id = sweep_id or latest_sweep_id(opened)
    url_or_storage = sweep_storage(opened, sweep_id)
    running.storage = open_storage(url_or_storage)
    running.server = server = serve(make_app(running.storage), port)
    base = f"http://{HOST}:{server.server_port}"
    storage_label = (
        masked(url_or_storage) if isinstance(url_or_storage, str) else "its journal in the store"
    )
    click.echo(f"sweep {sweep_id}: optuna-dashboard on {storage_label}")
    click.echo(study_url(url_or_storage, sweep_id, base))
    click.echo("press Ctrl-C to stop", err=True)
    sys.stdout.flush()


COMMANDS = [dashboard]


def main(argv: list[str] | None = None) -> None:
    """``python -m sweeper.cli.commands_dashboard``: the command on its own, errors as in ``sweep``."""
    try:
        dashboard.main(args=argv, prog_name="sweep dashboard", standalone_mode=True)
    except SweeperError as exc:
        click.echo(f"sweep: error: {exc}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
