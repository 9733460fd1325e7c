"""`siyu ingest serve`: the ingest app under gunicorn (threaded workers)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

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


def _child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def prepare_metrics_dir(home: Path) -> Path:
    """Workers are processes: Prometheus needs a shared folder to add their metrics up.

    Must run before prometheus_client is imported in this process (the value class is chosen then).
    """
    folder = Path(
        os.environ.get("PROMETHEUS_MULTIPROC_DIR") or home / "metrics" / f"ingest-{os.getpid()}"
    )
    shutil.rmtree(folder, ignore_errors=True)  # stale files of dead workers would count forever
    folder.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    return folder


def gunicorn_options(host: str, port: int, workers: int) -> dict:
    return {
        "child_exit": _child_exit,
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
    # First, before anything imports prometheus_client in this process (see prepare_metrics_dir).
    folder = prepare_metrics_dir(settings.home.resolve())
    try:
        # Fail fast on configuration before forking workers.
        from services.ingest.wiring import link_secret
        from shared.config import load_tenants

        load_tenants(settings.tenants_path)
        settings.require_database()
        settings.require_kafka()
        link_secret()
        _Gunicorn(settings, gunicorn_options(host, port, workers)).run()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0
