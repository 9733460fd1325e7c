"""`siyu ingest serve`: the ingest app under gunicorn (threaded workers)."""

from __future__ import annotations

import shutil

from shared.config import Settings
from shared.serving import GunicornApp, gunicorn_options, prepare_metrics_dir


def _load_ingest(settings: Settings):
    from services.ingest.wiring import build_app

    app, _publisher, _replayer = build_app(settings)
    return app


def main(settings: Settings, *, host: str, port: int, workers: int) -> int:
    # First, before anything imports prometheus_client in this process (see prepare_metrics_dir).
    folder = prepare_metrics_dir(settings.home.resolve(), "ingest")
    try:
        # Fail fast on configuration before forking workers.
        from services.ingest.wiring import link_secret
        from shared.tenants import check_secrets, load_tenants

        check_secrets(load_tenants(settings.tenants_path), callbacks_only=True)
        settings.require_database()
        settings.require_kafka()
        link_secret(settings)
        options = gunicorn_options(host, port, workers)
        GunicornApp(options, lambda: _load_ingest(settings)).run()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0
