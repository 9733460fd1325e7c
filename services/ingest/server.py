"""`siyu ingest serve`: the ingest app under gunicorn (threaded workers)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from gunicorn.app.base import BaseApplication

from shared.config import Settings


class GunicornApp(BaseApplication):
    """Gunicorn run from Python; ``load`` runs in each worker after the fork, so pools,
    producers and threads are per process."""

    def __init__(self, options: dict, load: Callable[[], object]):
        self.options = options
        self._load = load
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        return self._load()


def _load_ingest(settings: Settings):
    from services.ingest.wiring import build_app

    app, _publisher, _replayer = build_app(settings)
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
        from shared.config import check_secrets, load_tenants

        check_secrets(load_tenants(settings.tenants_path), callbacks_only=True)
        settings.require_database()
        settings.require_kafka()
        link_secret()
        options = gunicorn_options(host, port, workers)
        GunicornApp(options, lambda: _load_ingest(settings)).run()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0
