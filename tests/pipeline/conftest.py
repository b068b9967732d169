"""Pipeline tests run steps as ``python ...``: the interpreter running the tests (with numpy)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

_BIN = str(Path(sys.executable).parent)
if os.environ.get("PATH", "").split(os.pathsep)[0] != _BIN:
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")
