"""The serve case's endpoint: a linear model read from model/model.json, applied to a JSON body.

``POST {"x": [1.0, 2.0, 3.0]}`` answers ``{"y": w . x + b}``; a GET answers the model's name.
"""

import json

with open("model/model.json") as source:
    MODEL = json.load(source)


def application(environ, start_response):
    """Answer one request (WSGI)."""
    size = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(size) if size else b""
    if body:
        x = json.loads(body)["x"]
        answer = {"y": sum(w * v for w, v in zip(MODEL["w"], x, strict=True)) + MODEL["b"]}
    else:
        answer = {"model": MODEL["name"]}
    data = json.dumps(answer).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]
