"""The baseline: a bare Flask app answering the same route, under the same server settings."""

from __future__ import annotations

from flask import Flask, Response

app = Flask("bare")


@app.post("/wecom/<corp_id>")
def hello(corp_id: str):
    return Response("success", mimetype="text/plain")


@app.get("/healthz")
def healthz():
    return "ok"
