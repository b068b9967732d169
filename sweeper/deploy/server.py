"""What answers inside one replica: a WSGI app imported from the code, or a server process.

Both take a :class:`PlainRequest` and give a :class:`PlainResponse`, so the replica's HTTP
entry and the router's forwarded calls run the same code. A handler that raises answers
500 and the replica keeps serving; the traceback goes to the replica's log.
"""

from __future__ import annotations

import collections
import ctypes
import http.client
import importlib
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeper.errors import SweeperError

from .wsgi_shim import ERROR_MARK, PREFIX_HEADER

#: Lines of a replica's log kept for ``sweep deployment logs``.
LOG_LINES = 2000
#: Headers a proxy must not forward (RFC 9110 hop-by-hop).
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host"}


class EndpointStartError(SweeperError):
    """A replica could not start its endpoint; the message is the version's failure reason."""


@dataclass(frozen=True)
class PlainRequest:
    """One HTTP request, as plain values: ``path`` is what follows the endpoint's prefix."""

    method: str
    prefix: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True)
class PlainResponse:
    """One HTTP response, as plain values."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def short_response(status: int, text: str) -> PlainResponse:
    """A plain-text answer of sweeper's own (404, 500, 502)."""
    return PlainResponse(status, (("content-type", "text/plain; charset=utf-8"),), text.encode())


class Log:
    """The last :data:`LOG_LINES` lines a replica's endpoint printed."""

    def __init__(self) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=LOG_LINES)
        self.lock = threading.Lock()

    def write(self, line: str) -> None:
        """Keep one line."""
        with self.lock:
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        """Every line kept, newline-terminated."""
        with self.lock:
            return "".join(f"{line}\n" for line in self.lines)


class WsgiEndpoint:
    """``wsgi: module:callable`` imported from the version's code folder."""

    def __init__(self, target: str, repository: Path, log: Log) -> None:
        module_name, sep, attribute = target.partition(":")
        self.log = log
        sys.path.insert(0, str(repository))
        os.chdir(repository)  # files are placed relative to the working folder
        try:
            module = importlib.import_module(module_name)
            self.app = getattr(module, attribute or "application")
        except Exception as exc:
            log.write(traceback.format_exc())
            raise EndpointStartError(
                f"wsgi {target!r} does not import: {type(exc).__name__}: {exc}"
            ) from None
        if not callable(self.app):
            raise EndpointStartError(f"wsgi {target!r} is not callable")
        del sep

    def __call__(self, request: PlainRequest) -> PlainResponse:
        """Run the app on one request; an exception is a 500 (and a log entry)."""
        started: list[Any] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            started[:] = [status, headers]
            return lambda data: chunks.append(data)

        chunks: list[bytes] = []
        try:
            result = self.app(_environ(request, self.log), start_response)
            try:
                chunks.extend(bytes(c) for c in result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except Exception:
            self.log.write(traceback.format_exc())
            return short_response(500, "the endpoint's handler raised an error (see its log)\n")
        if not started:
            return short_response(500, "the endpoint's app did not call start_response\n")
        status, headers = started
        return PlainResponse(int(str(status).split()[0]), tuple(headers), b"".join(chunks))


def _environ(request: PlainRequest, log: Log) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": request.prefix,
        "PATH_INFO": request.path,
        "QUERY_STRING": request.query,
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(request.body),
        "wsgi.errors": _LogStream(log),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(request.body)),
    }
    for name, value in request.headers:
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
        elif key != "CONTENT_LENGTH":
            environ[f"HTTP_{key}"] = value
    return environ


class _LogStream:
    def __init__(self, log: Log) -> None:
        self.log = log

    def write(self, text: str) -> None:
        for line in text.splitlines():
            self.log.write(line)

    def flush(self) -> None:
        """Nothing is buffered."""

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)


class ServerEndpoint:
    """A ``server-command`` started by the replica and proxied to once it answers.

    ``start`` runs the command (``run(on_output, stop) -> exit description``, in a thread)
    and is given how to learn the server's host from its output; the replica is ready only
    once an HTTP request to ``host:port`` gets any answer, and fails with the server's last
    lines when it exits first or ``ready_timeout_s`` passes.
    """

    def __init__(
        self,
        run: Callable[[Callable[[str], None], threading.Event], str],
        port: int,
        log: Log,
        *,
        host: str | None,
        ready_timeout_s: float,
    ) -> None:
        self.port = port
        self.log = log
        self.host = host
        self.stop = threading.Event()
        self.ended: str | None = None
        #: Why the server gave up starting, in its own words (the WSGI shim's import error).
        self.error: str | None = None

        def target() -> None:
            self.ended = run(self._line, self.stop)

        self.thread = threading.Thread(target=target, name="sweeper-endpoint", daemon=True)
        self.thread.start()
        self._wait_ready(ready_timeout_s)

    def _line(self, line: str) -> None:
        # The Docker runtime's first line says where the container's network answers.
        if self.host is None and line.startswith(ADDRESS_MARK):
            found = line[len(ADDRESS_MARK) :].split()
            self.host = found[0] if found else "127.0.0.1"
            return
        if line.startswith(ERROR_MARK):
            self.error = line[len(ERROR_MARK) :].strip()
        self.log.write(line)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.thread.is_alive():
                if self.error is not None:
                    raise EndpointStartError(self.error)
                raise EndpointStartError(
                    f"the server exited before it answered on port {self.port} "
                    f"({self.ended}); its last lines:\n{self._tail()}"
                )
            if self.host is not None and self._answers():
                return
            time.sleep(0.1)
        self.close()
        raise EndpointStartError(
            f"the server did not answer on port {self.port} within {timeout_s:g} s; "
            f"its last lines:\n{self._tail()}"
        )

    def _tail(self) -> str:
        return "\n".join(self.log.text().splitlines()[-10:]) or "(no output)"

    def _answers(self) -> bool:
        assert self.host is not None
        try:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=2)
            connection.request("GET", "/")
            connection.getresponse().read()
            connection.close()
            return True
        except (OSError, http.client.HTTPException):
            return False

    def __call__(self, request: PlainRequest) -> PlainResponse:
        """Forward one request to the server."""
        assert self.host is not None
        target = request.path + (f"?{request.query}" if request.query else "")
        headers = {k: v for k, v in request.headers if k.lower() not in _HOP}
        headers[PREFIX_HEADER] = request.prefix
        try:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
            connection.request(request.method, target, body=request.body, headers=headers)
            response = connection.getresponse()
            body = response.read()
            connection.close()
        except (OSError, http.client.HTTPException) as exc:
            return short_response(502, f"the endpoint's server did not answer: {exc}\n")
        kept = tuple((k, v) for k, v in response.getheaders() if k.lower() not in _HOP)
        return PlainResponse(response.status, kept, body)

    def close(self) -> None:
        """Stop the server (the runtime ends it: process group, container)."""
        self.stop.set()
        self.thread.join(timeout=30)


#: The line the Docker runtime's script prints first: the container's address.
ADDRESS_MARK = "sweeper-endpoint-address "


def port_in_use(port: int) -> bool:
    """Whether something on this node already listens on ``port`` (loopback)."""
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def run_local_process(
    command: str, repository: Path, env: dict[str, str]
) -> Callable[[Callable[[str], None], threading.Event], str]:
    """How :class:`ServerEndpoint` runs a local server: ``sh -c`` in its own process group,
    killed with the replica (``PR_SET_PDEATHSIG``), so a replica killed with ``kill -9``
    leaves no server holding the port for the one Serve starts in its place."""

    def run(on_output: Callable[[str], None], stop: threading.Event) -> str:
        process = subprocess.Popen(
            ["/bin/sh", "-c", command],
            cwd=repository,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        assert process.stdout is not None
        watcher = threading.Thread(target=_kill_on, args=(stop, process), daemon=True)
        watcher.start()
        for raw in process.stdout:
            on_output(raw.decode(errors="replace"))
        code = process.wait()
        return f"exit code {code}"

    return run


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def _kill_on(stop: threading.Event, process: subprocess.Popen[bytes]) -> None:
    while process.poll() is None:
        if stop.wait(0.5):
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return


__all__ = [
    "ADDRESS_MARK",
    "EndpointStartError",
    "Log",
    "PlainRequest",
    "PlainResponse",
    "ServerEndpoint",
    "WsgiEndpoint",
    "port_in_use",
    "run_local_process",
    "short_response",
]
