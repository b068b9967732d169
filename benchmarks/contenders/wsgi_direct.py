"""The serve case's peer: the endpoint's WSGI app served directly by uvicorn, one process.

``python -m benchmarks.contenders.wsgi_direct --folder DIR --port P`` imports
``predict_app:application`` from DIR (which holds the model file at its path, as a replica's
folder does) and serves it until killed. uvicorn is the HTTP server Serve's proxy runs
(httptools, uvloop, HTTP/1.1 keep-alive); its WSGI middleware runs the app in a thread pool.
"""

from __future__ import annotations

import argparse
import os
import sys

import uvicorn
from uvicorn.middleware.wsgi import WSGIMiddleware


def main() -> None:
    """Serve the app until killed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--folder", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    os.chdir(args.folder)
    sys.path.insert(0, args.folder)
    from predict_app import application  # type: ignore[import-not-found]

    uvicorn.run(
        WSGIMiddleware(application),
        host="127.0.0.1",
        port=args.port,
        workers=1,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
