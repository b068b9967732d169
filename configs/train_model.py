"""Trains a one-hidden-layer network with numpy and prints one JSON metrics line per epoch.

Reads a dataset (the preprocess step's .npz, or the raw CSV) from $VH_INPUTS_DIR/dataset/ and
writes model.npz to $VH_OUTPUTS_DIR. Deterministic for a given set of parameters.
"""

import argparse
import glob
import json
import os

import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=20)
parser.add_argument("--learning_rate", type=float, default=0.01)
parser.add_argument("--hidden_units", type=int, default=16)
parser.add_argument("--l2", type=float, default=0.0001)
parser.add_argument("--activation", choices=["relu", "tanh"], default="relu")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

inputs = os.environ.get("VH_INPUTS_DIR", "inputs")
outputs = os.environ.get("VH_OUTPUTS_DIR", "outputs")
(path,) = glob.glob(os.path.join(inputs, "dataset", "*"))
if path.endswith(".npz"):
    data = np.load(path)
    x, y = data["x_train"], data["y_train"]
else:
    raw = np.loadtxt(path, delimiter=",", skiprows=1)
    x, y = raw[:, :2], raw[:, 2].astype(np.int64)
    x = (x - x.mean(axis=0)) / x.std(axis=0)

rng = np.random.default_rng(args.seed)
classes = int(y.max()) + 1
w1 = rng.normal(0, 1 / np.sqrt(x.shape[1]), (x.shape[1], args.hidden_units))
b1 = np.zeros(args.hidden_units)
w2 = rng.normal(0, 1 / np.sqrt(args.hidden_units), (args.hidden_units, classes))
b2 = np.zeros(classes)
onehot = np.eye(classes)[y]


def act(z):
    return np.maximum(z, 0) if args.activation == "relu" else np.tanh(z)


def dact(z, a):
    return (z > 0).astype(z.dtype) if args.activation == "relu" else 1 - a**2


batches = max(1, len(x) // 32)
for epoch in range(1, args.epochs + 1):
    for idx in np.array_split(rng.permutation(len(x)), batches):
        z1 = x[idx] @ w1 + b1
        a1 = act(z1)
        logits = a1 @ w2 + b2
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        g2 = (p - onehot[idx]) / len(idx)
        gw2 = a1.T @ g2 + args.l2 * w2
        g1 = (g2 @ w2.T) * dact(z1, a1)
        gw1 = x[idx].T @ g1 + args.l2 * w1
        w2 -= args.learning_rate * gw2
        b2 -= args.learning_rate * g2.sum(axis=0)
        w1 -= args.learning_rate * gw1
        b1 -= args.learning_rate * g1.sum(axis=0)
    logits = act(x @ w1 + b1) @ w2 + b2
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    loss = float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())
    accuracy = float((p.argmax(axis=1) == y).mean())
    print(json.dumps({"epoch": epoch, "loss": round(loss, 6), "accuracy": round(accuracy, 6)}))

os.makedirs(outputs, exist_ok=True)
np.savez(os.path.join(outputs, "model.npz"), w1=w1, b1=b1, w2=w2, b2=b2, activation=args.activation)
