"""``/healthz``, ``/readyz`` and ``/metrics`` for every process, as a Flask blueprint.

healthz: the process is alive (no dependency checks: a DB outage must not get pods killed).
readyz: every dependency check passes within its timeout, else 503 naming the failing checks
(why they failed is logged, never answered).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import structlog
from flask import Blueprint, Flask, Response, jsonify
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from werkzeug.serving import make_server

from shared.metrics import READY
from shared.web import new_app

log = structlog.get_logger("siyu.health")

Check = Callable[[], None]

_checks_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="readyz")


def postgres_check(pool) -> Check:
    """Ready when a pooled connection answers within 2 s."""

    def check() -> None:
        with pool.connection(timeout=2) as conn:
            conn.execute("SELECT 1")

    return check


def polled_check(runner, within_s: float = 30) -> Check:
    """Ready when the consumer ``runner`` polled Kafka within the last ``within_s`` seconds."""

    def check() -> None:
        last = runner.last_poll_at
        if last is None or time.monotonic() - last > within_s:
            raise RuntimeError(f"the consumer has not polled in the last {within_s:g} s")

    return check


def run_checks(checks: dict[str, Check], timeout: float = 2.0) -> dict[str, str]:
    """Run checks concurrently; map each name to "ok", "timeout" or "failed". The reason goes
    to the log only: an error's text can name hosts, users, schemas or paths, and /readyz
    answers anyone who can reach the port (docs/security.md "Safe defaults")."""
    futures = {name: _checks_pool.submit(check) for name, check in checks.items()}
    results = {}
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            results[name] = "ok"
        except FutureTimeout:
            results[name] = "timeout"
            log.warning("readiness_check_failed", check=name, error=f"timeout after {timeout}s")
        except Exception as exc:
            results[name] = "failed"
            log.warning("readiness_check_failed", check=name,
                        error=f"{type(exc).__name__}: {str(exc)[:200]}")  # fmt: skip
    return results


def ops_blueprint(checks: dict[str, Check] | None = None, *, registry=REGISTRY) -> Blueprint:
    checks = checks or {}
    bp = Blueprint("ops", __name__)

    @bp.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @bp.get("/readyz")
    def readyz():
        results = run_checks(checks)
        ready = all(v == "ok" for v in results.values())
        READY.set(1 if ready else 0)
        return jsonify(status="ready" if ready else "not_ready", checks=results), (
            200 if ready else 503
        )

    @bp.get("/metrics")
    def metrics():
        return Response(generate_latest(_registry(registry)), mimetype=CONTENT_TYPE_LATEST)

    return bp


def _registry(default):
    """Under a multi-process server each worker writes its metrics to a shared folder; /metrics
    (answered by any one worker) must add them all up (prometheus_client multiprocess mode)."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return default
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def create_ops_app(name: str, checks: dict[str, Check] | None = None) -> Flask:
    """A tiny app for processes that serve no API (consumers, workers): health + metrics only."""
    app = new_app(name)
    app.register_blueprint(ops_blueprint(checks))
    return app


class BackgroundServer:
    """Serve a WSGI app from a daemon thread (the ops port of a consumer process)."""

    def __init__(self, app: Flask, host: str, port: int):
        self._server = make_server(host, port, app, threaded=True)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> BackgroundServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
