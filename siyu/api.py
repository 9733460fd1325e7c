"""`siyu api serve`: the admin API (:8090, /api/v1) under gunicorn, one app for every service's
admin routes, and the web console at / (console/, docs/console.md).

Each service lists its ``shared.api.Blueprint`` objects in ``BLUEPRINTS`` of its ``api``
module and its background job kinds in ``JOBS``; ``blueprints()`` and ``job_kinds()`` gather
them. Those blueprints reach the pool (search_path: the outreach schema, with the admin tables)
through ``shared.api.connection()``, and the schema of any other service
through ``shared.api.context().schema_for("segment")``.

Nothing here imports prometheus_client at module level: ``main`` must prepare the multi-process
metrics folder first.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable

import structlog

from shared.config import Settings
from shared.errors import ConfigError
from shared.serving import GunicornApp, gunicorn_options, prepare_metrics_dir
from shared.tenants import load_tenants


def blueprints() -> list:
    """Every admin route: outreach's admin tables, the audit log and each service's own."""
    from services.ingest.api import BLUEPRINTS as INGEST
    from services.outreach.admin import BLUEPRINTS as ADMIN
    from services.outreach.api import BLUEPRINTS as OUTREACH
    from services.segment.api import BLUEPRINTS as SEGMENT
    from shared.api.audit import blp as audit

    return [*ADMIN, audit, *SEGMENT, *OUTREACH, *INGEST]


def job_kinds() -> dict:
    """The background jobs of the services that queue them (dry runs, previews)."""
    from services.outreach.api import JOBS as OUTREACH
    from services.segment.api import JOBS as SEGMENT

    return {kind.name: kind for kind in (*SEGMENT, *OUTREACH)}


def default_schema_for(settings: Settings) -> Callable[[str], str]:
    """The schema of each service: its name, and ``settings.outreach_schema`` for outreach."""
    return lambda service: settings.outreach_schema if service == "outreach" else service


def create_app(
    settings: Settings,
    *,
    pool=None,
    schema_for: Callable[[str], str] | None = None,
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
    from shared.db import create_pool
    from shared.ratelimit import TenantLimiter, registry_limits
    from shared.tokens import DEFAULT_CACHE_TTL_S

    schema_for = schema_for or default_schema_for(settings)
    registry = load_tenants(settings.tenants_path)
    job_pool = pool  # tests share theirs; a server gives jobs a pool of their own (below)
    if pool is None:
        pool = create_pool(
            settings.require_database(),
            name="api",
            schema=schema_for("outreach"),
            timeouts=settings.api_db,
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
    from console.app import init_console

    init_console(app, settings)  # the web console at / (docs/console.md)
    if settings.trusted_proxies:  # the client's address and scheme as trusted proxies saw them
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    if settings.kafka.bootstrap:
        app.extensions[SEGMENT_OUTBOX] = segment_outbox(settings, schema_for("segment")).start()
    if run_jobs:
        # Dry runs and previews: queued in their service's jobs table, run by a few threads of
        # each API process (docs/architecture.md, "Background jobs").
        from shared.jobs import EXTENSION, Runner

        jobs = settings.jobs
        if job_pool is None:  # a job holds a connection for long: never the requests' ones
            job_pool = create_pool(
                settings.require_database(),
                name="api-jobs",
                schema=schema_for("outreach"),
                max_size=jobs.threads + 2,
                timeouts=settings.worker_db,
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

    pool = create_pool(
        settings.require_database(),
        name="api-outbox",
        schema=schema,
        max_size=1,
        timeouts=settings.worker_db,
    )
    return OutboxDrainer(
        pool,
        lambda: create_producer(settings.kafka, client_id="siyu-api-outbox"),
        owns_producer=True,
        name="segment-outbox",
    )


def main(settings: Settings, *, host: str, port: int, workers: int) -> int:
    # First, before anything imports prometheus_client in this process.
    folder = prepare_metrics_dir(settings.home.resolve(), "api")
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
