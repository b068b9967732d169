"""A project whose steps use valohai-utils: one writes output properties and a dataset
version, one reads a dataset version, one writes a properties file by hand (bad lines too).

The steps run with this interpreter (valohai-utils is installed beside sweeper), through the
local runtime, as a user's project would.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

STEPS = f"""
- step:
    name: make
    image: python:3.11
    command: {sys.executable} make.py {{parameters}}
    parameters:
      - name: version
        type: string
        default: v1
      - name: tag
        type: string
        default: ""
      - name: fail
        type: flag
        default: false
- step:
    name: use
    image: python:3.11
    command: {sys.executable} use.py
    inputs:
      - name: shapes
        default: dataset://shapes/latest
- step:
    name: by-hand
    image: python:3.11
    command: {sys.executable} by_hand.py
"""

# valohai-utils' own API: outputs().path() and output_properties(), as its README shows.
MAKE_PY = """
import argparse
import valohai

parser = argparse.ArgumentParser()
parser.add_argument("--version")
parser.add_argument("--tag", default="")
parser.add_argument("--fail", action="store_true")
args = parser.parse_args()
for name, text in (("train.csv", "x\\n1\\n"), ("more/test.csv", "x\\n2\\n" + args.version + args.tag)):
    with open(valohai.outputs().path(name), "w") as f:
        f.write(text)
with open(valohai.outputs().path("notes.txt"), "w") as f:
    f.write("in no dataset")
with valohai.output_properties() as properties:
    properties.add(file="train.csv", properties={"rows": 1, "split": "train"})
    version = properties.dataset_version_uri("shapes", args.version)
    for name in ("train.csv", "more/test.csv"):
        properties.add_to_dataset(file=name, dataset_version=version)
raise SystemExit(3 if args.fail else 0)
"""

USE_PY = """
import hashlib, json, os
root = os.path.join(os.environ["VH_INPUTS_DIR"], "shapes")
seen = {}
for folder, _, files in os.walk(root):
    for name in files:
        path = os.path.join(folder, name)
        seen[os.path.relpath(path, root)] = open(path).read()
print(json.dumps({"files": len(seen)}))
with open(os.path.join(os.environ["VH_OUTPUTS_DIR"], "seen.json"), "w") as f:
    json.dump(seen, f, sort_keys=True)
"""

# Written without valohai-utils: the lines a buggy or hostile step may leave.
BY_HAND_PY = """
import json, os
out = os.environ["VH_OUTPUTS_DIR"]
for name in ("good.txt", "big.txt", "plain.txt"):
    with open(os.path.join(out, name), "w") as f:
        f.write(name)
lines = [
    json.dumps({"file": "good.txt", "metadata": {"score": 0.5}}),
    "{not json",
    json.dumps(["a", "list"]),
    json.dumps({"file": "missing.txt", "metadata": {"x": 1}}),
    json.dumps({"file": "big.txt", "metadata": {"blob": "x" * 70000}}),
    json.dumps({"file": "../escape.txt", "metadata": {"x": 1}}),
    json.dumps({"file": "good.txt", "metadata": {"valohai.dataset-versions": ["dataset://bad"]}}),
]
with open(os.path.join(out, "valohai.metadata.jsonl"), "w") as f:
    f.write("\\n".join(lines) + "\\n")
"""

FILES = {"make.py": MAKE_PY, "use.py": USE_PY, "by_hand.py": BY_HAND_PY}


def dataset_project(make_project: Callable[..., Path]) -> Path:
    """The project, written by the ``make_project`` fixture."""
    return make_project(STEPS, FILES)
