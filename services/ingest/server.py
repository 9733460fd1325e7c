"""`siyu ingest serve`: the ingest app under gunicorn (threaded workers)."""

from __future__ import annotations

from gunicorn.app.base import BaseApplication

from shared.config import Settings


class _Gunicorn(BaseApplication):
    def __init__(self, settings: Settings, options: dict):
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        # Runs in each worker after the fork: pools, producers and threads are per process.
        from services.ingest.wiring import build_app

        app, _publisher, _replayer = build_app(self.settings)
        return app


def gunicorn_options(host: str, port: int, workers: int) -> dict:
    return {
        "bind": f"{host}:{port}",
        "workers": max(1, workers),
        "worker_class": "gthread",
        "threads": 8,
        "timeout": 30,
        "graceful_timeout": 20,
        "keepalive": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
    }


def main(settings: Settings, *, host: str, port: int, workers: int) -> int:
    # Fail fast on configuration before forking workers.
    from services.ingest.wiring import link_secret
    from shared.config import load_tenants

    load_tenants(settings.tenants_path)
    settings.require_database()
    settings.require_kafka()
    link_secret()
    _Gunicorn(settings, gunicorn_options(host, port, workers)).run()
    return 0
