"""Sleep x * 0.6 s, then print one JSON metric line: trials of uneven lengths, as real ones are."""

import argparse
import json
import time

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, default=0.5)
args = parser.parse_args()
time.sleep(args.x * 0.6)
print(json.dumps({"loss": (args.x - 0.3) ** 2}))
