"""Calls a deployed predict endpoint and checks its answer; exits 1 when it is wrong.

Sends two points and expects a class for each, and probabilities that sum to one. Prints
the answer's metadata as one JSON line.
"""

import argparse
import json
import sys
import urllib.request

parser = argparse.ArgumentParser()
parser.add_argument("--url", required=True)
parser.add_argument("--version_id", default="")
args = parser.parse_args()

request = urllib.request.Request(
    args.url,
    data=json.dumps({"points": [[0.0, 0.0], [1.5, -1.0]]}).encode(),
    headers={"Content-Type": "application/json"},
)
with urllib.request.urlopen(request, timeout=30) as response:
    answer = json.loads(response.read())
classes, probabilities = answer.get("classes"), answer.get("probabilities")
ok = (
    isinstance(classes, list)
    and len(classes) == 2
    and all(abs(sum(p) - 1) < 1e-3 for p in probabilities)
)
print(json.dumps({"endpoint_ok": int(ok), "version_id": args.version_id, "classes": classes}))
if not ok:
    print(f"unexpected answer from {args.url}: {answer}", file=sys.stderr)
    sys.exit(1)
