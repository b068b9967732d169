"""Evaluates a trained model on the held-out split and prints its test metrics as JSON."""

import glob
import json
import os

import numpy as np

inputs = os.environ.get("VH_INPUTS_DIR", "inputs")
(model_path,) = glob.glob(os.path.join(inputs, "model", "*.npz"))
(data_path,) = glob.glob(os.path.join(inputs, "test_data", "*.npz"))
model = np.load(model_path)
data = np.load(data_path)
x, y = data["x_test"], data["y_test"]
z = x @ model["w1"] + model["b1"]
a = np.maximum(z, 0) if str(model["activation"]) == "relu" else np.tanh(z)
logits = a @ model["w2"] + model["b2"]
accuracy = float((logits.argmax(axis=1) == y).mean())
print(json.dumps({"test_accuracy": round(accuracy, 6), "test_rows": int(len(y))}))
