"""Sleep, then print one JSON metric line (for parallel efficiency)."""

import argparse
import json
import time

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, default=0.5)
parser.add_argument("--seconds", type=float, default=1.0)
args = parser.parse_args()
time.sleep(args.seconds)
print(json.dumps({"loss": (args.x - 0.3) ** 2}))
