"""HTTP processes under gunicorn (threaded workers): the ingest server and the admin API.

Workers are processes, so Prometheus needs a folder they share to add their metrics up; the
folder is made before anything imports prometheus_client (its value class is chosen then).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from gunicorn.app.base import BaseApplication


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


def _child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def prepare_metrics_dir(home: Path, process: str) -> Path:
    """PROMETHEUS_MULTIPROC_DIR, else a folder of this process under ``home``/metrics, emptied.

    Must run before prometheus_client is imported in this process.
    """
    folder = Path(
        os.environ.get("PROMETHEUS_MULTIPROC_DIR") or home / "metrics" / f"{process}-{os.getpid()}"
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
