"""A ``wsgi`` endpoint's server inside its image: the standard library's WSGI server, threaded.

In the Docker runtime a ``wsgi: module:callable`` endpoint runs in the endpoint's image (its
Python, its packages), not in the Serve replica: the replica copies this file into the
version's work folder and runs ``python3 /valohai/sweeper-wsgi.py MODULE:CALLABLE PORT`` in
``/valohai/repository`` as the container's command, then proxies to it as to a
``server-command``. It imports nothing but the standard library (nothing to install in the
image) and nothing of sweeper, so it keeps to what Python 3.7 has.
"""

from __future__ import annotations  # annotations unevaluated: an old Python runs it

import importlib
import os
import socketserver
import sys
import traceback
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

#: The line printed when the app does not import: the rest is the version's failure reason.
ERROR_MARK = "sweeper-endpoint-error "
#: The header the replica's proxy sets to the endpoint's URL prefix (WSGI's SCRIPT_NAME).
PREFIX_HEADER = "X-Forwarded-Prefix"
_ERROR_BODY = b"the endpoint's handler raised an error (see its log)\n"


class ThreadedServer(socketserver.ThreadingMixIn, WSGIServer):
    """One thread per request, as the in-replica path answers requests concurrently."""

    daemon_threads = True
    allow_reuse_address = True


class Handler(WSGIRequestHandler):
    """SCRIPT_NAME from the proxy's prefix header; no access log line per request."""

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        prefix = self.headers.get(PREFIX_HEADER)
        if prefix:
            environ["SCRIPT_NAME"] = prefix
        environ["wsgi.multithread"] = True
        return environ

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Requests are not logged: the log is the app's own output and its tracebacks."""


def guarded(app: Any) -> Any:
    """``app`` answering 500 with sweeper's body when it raises (the traceback to the log)."""

    def run(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        try:
            result = app(environ, start_response)
            try:
                # read whole here, so an error while iterating still gets a clean 500
                return [bytes(chunk) for chunk in result]
            finally:
                if hasattr(result, "close"):
                    result.close()
        except Exception:
            traceback.print_exc()
            sys.stderr.flush()
            start_response(
                "500 Internal Server Error",
                [("Content-Type", "text/plain; charset=utf-8")],
                sys.exc_info(),
            )
            return [_ERROR_BODY]

    return run


def load(target: str) -> Any:
    """The callable ``module:attribute`` names (``application`` when no attribute is given)."""
    module_name, _, attribute = target.partition(":")
    sys.path.insert(0, os.getcwd())
    try:
        app: Any = getattr(importlib.import_module(module_name), attribute or "application")
    except Exception as exc:
        traceback.print_exc()
        print(f"{ERROR_MARK}wsgi {target!r} does not import: {type(exc).__name__}: {exc}")
        sys.exit(3)
    if not callable(app):
        print(f"{ERROR_MARK}wsgi {target!r} is not callable")
        sys.exit(3)
    return app


def main() -> None:
    """Serve ``argv[1]`` (``module:callable``) on every address at port ``argv[2]``."""
    target, port = sys.argv[1], int(sys.argv[2])
    app = guarded(load(target))
    server = ThreadedServer(("0.0.0.0", port), Handler)
    server.set_app(app)
    print(f"serving {target} on port {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
