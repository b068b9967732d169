"""Print one JSON metric line: the loss of a parameter x."""

import argparse
import json

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, default=0.5)
args = parser.parse_args()
print(json.dumps({"loss": (args.x - 0.3) ** 2}))
