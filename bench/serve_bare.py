"""Serve the bare baseline app with exactly ingest's gunicorn settings."""

from __future__ import annotations

import sys

from shared.serving import GunicornApp, gunicorn_options


def _load():
    from bench.bare_app import app

    return app


if __name__ == "__main__":
    _, port, workers = sys.argv
    GunicornApp(gunicorn_options("127.0.0.1", int(port), int(workers)), _load).run()
