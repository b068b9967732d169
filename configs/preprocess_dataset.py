"""Reads the raw CSV input, standardizes the features and writes a train/test split.

Valohai contract: inputs under $VH_INPUTS_DIR/<input name>/, outputs to $VH_OUTPUTS_DIR.
"""

import argparse
import glob
import json
import os

import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("--test_fraction", type=float, default=0.2)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

inputs = os.environ.get("VH_INPUTS_DIR", "inputs")
outputs = os.environ.get("VH_OUTPUTS_DIR", "outputs")
(path,) = glob.glob(os.path.join(inputs, "dataset", "*"))
data = np.loadtxt(path, delimiter=",", skiprows=1)
x, y = data[:, :2], data[:, 2].astype(np.int64)
x = (x - x.mean(axis=0)) / x.std(axis=0)
order = np.random.default_rng(args.seed).permutation(len(x))
n_test = int(len(x) * args.test_fraction)
test, train = order[:n_test], order[n_test:]
os.makedirs(outputs, exist_ok=True)
np.savez(
    os.path.join(outputs, "preprocessed.npz"),
    x_train=x[train],
    y_train=y[train],
    x_test=x[test],
    y_test=y[test],
)
print(json.dumps({"train_rows": int(len(train)), "test_rows": int(n_test)}))
