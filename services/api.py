"""`siyu api serve`: the admin API (:8090, /api/v1) under gunicorn, one app for every service's
admin routes.

A service adds routes by listing its ``shared.api.Blueprint`` objects: ours in ``blueprints()``,
or, for a service built later, a module in ``OPTIONAL_MODULES`` exposing ``BLUEPRINTS`` (skipped
while it does not exist). Those blueprints reach the pool (search_path: the outreach schema, with
the admin tables) through ``shared.api.connection()``, and the schema of any other service
through ``shared.api.context().schema_for("segment")``.

Nothing here imports prometheus_client at module level: ``main`` must prepare the multi-process
metrics folder first.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
from collections.abc import Callable

import structlog

from services.ingest.server import GunicornApp, gunicorn_options, prepare_metrics_dir
from shared.config import Settings, load_tenants
from shared.errors import ConfigError

# Modules of services built later; each exposes BLUEPRINTS (a sequence of shared.api.Blueprint).
OPTIONAL_MODULES = ("services.segment.api", "services.outreach.api", "services.ingest.api")


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def blueprints() -> list:
    from services.outreach.admin import BLUEPRINTS as ADMIN
    from shared.api.audit import blp as audit

    found = [*ADMIN, audit]
    for name in OPTIONAL_MODULES:
        if _module_exists(name):  # a module that exists but fails to import is an error
            found.extend(importlib.import_module(name).BLUEPRINTS)
    return found


def job_kinds() -> dict:
    """The background jobs of the modules that queue them (a module's ``JOBS``)."""
    found = {}
    for name in OPTIONAL_MODULES:
        if _module_exists(name):
            for kind in getattr(importlib.import_module(name), "JOBS", ()):
                found[kind.name] = kind
    return found


def default_schema_for(service: str) -> str:
    """The schema of each service: its name, and SIYU_OUTREACH_SCHEMA for outreach."""
    if service == "outreach":
        from services.outreach.tokens import outreach_schema

        return outreach_schema()
    return service


def create_app(
    settings: Settings,
    *,
    pool=None,
    schema_for: Callable[[str], str] = default_schema_for,
    token_cache_ttl_s: float | None = None,
    run_jobs: bool = True,
):
    """The admin API app; opens its own pool on the outreach schema unless given ``pool``.

    Seeds the tenants table from the tenants file (existing rows are left as they are). With
    Kafka configured, drains the segment outbox that staff overrides write (``segment_outbox``).
    """
    from services.outreach.tenant_deletion import listed_in_file
    from services.outreach.tokens import seed_tenants
    from shared.api import create_api_app
    from shared.api.auth import DEFAULT_CACHE_TTL_S
    from shared.db import DbTimeouts, create_pool
    from shared.ratelimit import TenantLimiter, registry_limits

    registry = load_tenants(settings.tenants_path)
    job_pool = pool  # tests share theirs; a server gives jobs a pool of their own (below)
    if pool is None:
        pool = create_pool(
            settings.require_database(),
            name="api",
            schema=schema_for("outreach"),
            timeouts=DbTimeouts.from_env("api"),
        )
    with pool.connection() as conn:
        seed_tenants(conn, registry)
        for deleted in listed_in_file(conn, registry):  # deleted through the API: not seeded
            structlog.get_logger("siyu.api").warning(
                "deleted_tenant_still_in_tenants_file", tenant_id=deleted,
                tenants=str(settings.tenants_path),
            )  # fmt: skip

    def postgres() -> None:
        with pool.connection(timeout=2) as conn:
            conn.execute("SELECT 1")

    app = create_api_app(
        "siyu.api",
        pool=pool,
        blueprints=blueprints(),
        checks={"postgres": postgres},
        schema_for=schema_for,
        token_cache_ttl_s=DEFAULT_CACHE_TTL_S if token_cache_ttl_s is None else token_cache_ttl_s,
        settings=settings,
        limiter=TenantLimiter(pool, registry_limits(registry, settings.limits)),
    )
    if settings.kafka.bootstrap:
        app.extensions[SEGMENT_OUTBOX] = segment_outbox(settings, schema_for("segment")).start()
    if run_jobs:
        # Dry runs and previews: queued in their service's jobs table, run by a few threads of
        # each API process (docs/architecture.md, "Background jobs").
        from shared.jobs import EXTENSION, JobSettings, Runner

        jobs = JobSettings.from_env()
        if job_pool is None:  # a job holds a connection for long: never the requests' ones
            job_pool = create_pool(
                settings.require_database(),
                name="api-jobs",
                schema=schema_for("outreach"),
                max_size=jobs.threads + 2,
            )
        app.extensions[EXTENSION] = Runner(job_pool, schema_for, job_kinds(), jobs).start()
    return app


SEGMENT_OUTBOX = "siyu.segment_outbox"


def segment_outbox(settings: Settings, schema: str):
    """A stage, role or merge changed by staff is queued in the segment outbox; this process
    publishes it on a timer (within a second), not the next touchpoint batch of the consumer."""
    from shared.db import create_pool
    from shared.kafka.producer import create_producer
    from shared.outbox import OutboxDrainer

    pool = create_pool(settings.require_database(), name="api-outbox", schema=schema, max_size=1)
    return OutboxDrainer(
        pool,
        lambda: create_producer(settings.kafka, client_id="siyu-api-outbox"),
        owns_producer=True,
        name="segment-outbox",
    )


def main(settings: Settings, *, host: str, port: int, workers: int) -> int:
    # Before anything imports prometheus_client here; a folder of its own beside ingest's.
    home = settings.home.resolve()
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(home / "metrics" / f"api-{os.getpid()}"))
    folder = prepare_metrics_dir(home)
    try:
        # Fail fast on configuration before forking workers.
        from shared.db import ping

        load_tenants(settings.tenants_path)
        dsn = settings.require_database()
        try:
            ping(dsn)
        except Exception as exc:
            raise ConfigError(f"cannot reach PostgreSQL: {str(exc).strip()[:200]}") from None
        GunicornApp(gunicorn_options(host, port, workers), lambda: create_app(settings)).run()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0
