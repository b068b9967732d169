"""The predict endpoint: a WSGI app that classifies points with the model train-model wrote.

POST a JSON body ``{"points": [[x0, x1], ...]}`` (standardized coordinates, as the model was
trained on); the answer is ``{"classes": [...], "probabilities": [[...], ...]}``. The model
file, model.npz, is placed next to this file's working directory by the deployment.
"""

import json

import numpy as np

model = np.load("model.npz")


def predict(points):
    """Class probabilities of each point: the forward pass of train_model.py."""
    z = points @ model["w1"] + model["b1"]
    a = np.maximum(z, 0) if str(model["activation"]) == "relu" else np.tanh(z)
    logits = a @ model["w2"] + model["b2"]
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def app(environ, start_response):
    """``POST {"points": [[x0, x1], ...]}`` -> ``{"classes": [...], "probabilities": [...]}``."""
    try:
        size = int(environ.get("CONTENT_LENGTH") or 0)
        points = np.asarray(json.loads(environ["wsgi.input"].read(size))["points"], dtype=float)
        if points.ndim != 2 or points.shape[1] != model["w1"].shape[0]:
            raise ValueError(f"points must be a list of [x0, x1] pairs, not shape {points.shape}")
    except (ValueError, KeyError, TypeError) as exc:
        body, status = {"error": str(exc)}, "400 Bad Request"
    else:
        p = predict(points)
        body = {"classes": p.argmax(axis=1).tolist(), "probabilities": p.round(6).tolist()}
        status = "200 OK"
    data = json.dumps(body).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]
