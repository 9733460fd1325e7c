"""Serve the bare baseline app with exactly ingest's gunicorn settings."""

from __future__ import annotations

import sys

from gunicorn.app.base import BaseApplication

from services.ingest.server import gunicorn_options


class _Bare(BaseApplication):
    def __init__(self, options: dict):
        self.options = options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from bench.bare_app import app

        return app


if __name__ == "__main__":
    _, port, workers = sys.argv
    _Bare(gunicorn_options("127.0.0.1", int(port), int(workers))).run()
