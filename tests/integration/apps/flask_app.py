"""A small Flask app exercising query args, forms, uploads, streaming and errors.

Exceptions propagate out of Flask (``PROPAGATE_EXCEPTIONS``) so that the server's own
500 handling is what the tests observe.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from flask import Flask, Response, jsonify, request, stream_with_context

app = Flask(__name__)
app.config["PROPAGATE_EXCEPTIONS"] = True


@app.get("/echo")
def echo() -> Response:
    return jsonify(
        path=request.path,
        args={key: request.args.getlist(key) for key in request.args},
    )


@app.post("/form")
def form() -> Response:
    return jsonify(form={key: request.form.getlist(key) for key in request.form})


@app.post("/upload")
def upload() -> Response:
    blob = request.files["file"]
    data = blob.read()
    return jsonify(
        filename=blob.filename,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        note=request.form.get("note"),
    )


def stream_line(index: int) -> str:
    """One line of the streamed body; shared with the Django app so the tests can rebuild it."""
    return f"chunk-{index:05d}:" + "x" * 1000 + "\n"


@app.get("/stream")
def stream() -> Response:
    count = int(request.args.get("n", "100"))

    def generate() -> Iterator[str]:
        # Touching the request inside the generator proves stream_with_context kept it alive.
        assert request.path == "/stream"
        for index in range(count):
            yield stream_line(index)

    return Response(stream_with_context(generate()), mimetype="text/plain")


@app.get("/boom")
def boom() -> Response:
    raise RuntimeError("kaboom-SECRET-detail")
