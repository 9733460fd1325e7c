"""`siyu segment recompute --tenant ID`: re-derive every contact of a tenant, safely beside the
consumer (keyset batches, one transaction each, rows it is busy with are skipped)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click
import structlog

from services.segment import store
from services.segment.derive import refresh_contacts
from services.segment.segments import recompute
from services.segment.topics import Topics
from shared.config import Settings
from shared.db import NO_TIMEOUTS, create_pool
from shared.errors import UnknownTenant
from shared.kafka.producer import create_producer
from shared.outbox import drain
from shared.tenants import load_tenants

log = structlog.get_logger("siyu.segment.recompute")


def main(settings: Settings, *, tenant: str, batch: int = 500, schema: str = "segment") -> int:
    found = load_tenants(settings.tenants_path).get(tenant)
    if found is None:
        raise UnknownTenant(f"unknown tenant {tenant!r} (not in {settings.tenants_path})")
    settings.require_kafka()
    # An explicit long job: a tenant's whole recompute is not bound by the workers' limits.
    pool = create_pool(
        settings.require_database(),
        name="segment-recompute",
        schema=schema,
        timeouts=NO_TIMEOUTS,
    )
    producer = create_producer(settings.kafka, client_id="siyu-segment-recompute")
    topics = Topics.with_prefix(settings.kafka.topic_prefix)
    now = datetime.now(UTC)

    def evaluate(conn, tenant_, rows) -> int:
        refresh_contacts(conn, tenant_, rows, topics=topics, now=now)
        return len(rows)

    def flush(_n: int) -> None:
        while drain(pool, lambda: producer) == 200:
            pass

    try:
        with pool.connection() as conn:
            total = store.contact_count(conn, tenant)
        with click.progressbar(length=total, label=f"recompute {tenant}", file=sys.stderr) as bar:

            def progress(n: int) -> None:
                flush(n)
                bar.update(n)

            done = recompute(
                pool.connection, found, evaluate=evaluate, batch=batch, progress=progress
            )
        with pool.connection() as conn:
            sizes = conn.execute(
                "SELECT s.segment_id, count(m.contact_id) AS n FROM segments s "
                "LEFT JOIN segment_members m USING (tenant_id, segment_id) "
                "WHERE s.tenant_id = %s GROUP BY 1 ORDER BY 1",
                (tenant,),
            ).fetchall()
    finally:
        producer.close()
        pool.close()
    click.echo(f"{done} contacts of {tenant} re-derived")
    for row in sizes:
        click.echo(f"  segment {row['segment_id']}: {row['n']} members")
    return 0
