"""`siyu segment consume`: touchpoints -> segment state, in the `siyu-segment` consumer group.

decode (envelope schema) -> process (one transaction per batch: apply every touchpoint) -> commit.
A touchpoint of a tenant this deployment does not know is a poison message (DLQ), not a crash.
At start, every tenant's catalogue (its model and segments, services/segment/catalogue.py) is
queued in the outbox, so a fresh outreach schema fills up without waiting for a change.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
from psycopg_pool import ConnectionPool

from services.segment.apply import apply_touchpoints
from services.segment.catalogue import queue_all
from services.segment.derive import Checkpoint, derive_touched, queue_tombstone
from services.segment.enrichment import Enricher
from services.segment.tick import Ticker
from services.segment.topics import Topics
from shared.config import Settings
from shared.db import create_pool
from shared.envelope import Touchpoint, decode_touchpoint
from shared.health import BackgroundServer, create_ops_app, polled_check, postgres_check
from shared.kafka.consumer import (
    ConsumerRunner,
    DeadLetterQueue,
    Decoded,
    Message,
    PoisonMessage,
    create_consumer,
)
from shared.kafka.dlq_limit import DlqLimit
from shared.kafka.producer import create_producer
from shared.kafka.topics import TOUCHPOINTS, TOUCHPOINTS_DLQ
from shared.outbox import OutboxDrainer
from shared.tenants import TenantRegistry, load_tenants

log = structlog.get_logger("siyu.segment")

GROUP = "siyu-segment"


def decode(message: Message) -> Touchpoint:
    return decode_touchpoint(message.value)


def make_process(
    pool: ConnectionPool, tenants: TenantRegistry, topics: Topics, outbox: OutboxDrainer
) -> Callable:
    def process(batch: list[Decoded[Touchpoint]]) -> None:
        for item in batch:
            if tenants.get(item.payload.tenant_id) is None:
                raise PoisonMessage(item.message, f"unknown tenant {item.payload.tenant_id!r}")
        # Pipeline mode: statements whose results we do not read (updates, history, outbox) are
        # sent without waiting for each answer; fewer round trips per batch.
        with pool.connection() as conn, conn.transaction(), conn.pipeline():
            apply_batch(conn, tenants, [item.payload for item in batch], topics)
        # Stage changes and profiles were queued in the same transaction; send them now, on the
        # drainer's thread when it runs, so the next batch does not wait for the broker's acks.
        # If the broker is away they stay queued for the outbox's timer or a later batch.
        outbox.publish_soon()

    return process


def apply_batch(conn, tenants: TenantRegistry, touchpoints: list[Touchpoint], topics: Topics):
    """Apply every touchpoint, then derive each touched contact and account once."""
    touched: dict[str, dict[str, list[Checkpoint]]] = {}
    by_tenant: dict[str, list[Touchpoint]] = {}
    for tp in touchpoints:
        by_tenant.setdefault(tp.tenant_id, []).append(tp)  # tenants share no rows: order kept
    for tenant_id, batch in sorted(by_tenant.items()):
        tenant = tenants.get(tenant_id)
        mine = touched.setdefault(tenant_id, {})
        for tp, applied in apply_touchpoints(conn, tenant_id, batch):
            target = mine.setdefault(applied.contact_id, [])
            for merged in applied.merged:
                queue_tombstone(conn, tenant, merged, applied.contact_id, topics)
                target.extend(mine.pop(merged, []))
            target.append((tp.occurred_at, tp.event_id))
    for tenant_id, contacts in sorted(touched.items()):
        if contacts:
            derive_touched(conn, tenants.get(tenant_id), contacts, topics)


def outbox_drainer(settings: Settings, pool: ConnectionPool) -> OutboxDrainer:
    """The segment outbox on a timer: rows that staff overrides queue through the admin API
    have no batch behind them, and must not wait for the next touchpoint to go out."""
    return OutboxDrainer(
        pool,
        lambda: create_producer(settings.kafka, client_id="siyu-segment-outbox"),
        owns_producer=True,
        name="segment-outbox",
    )


def build_runner(
    settings: Settings,
    pool: ConnectionPool,
    tenants: TenantRegistry,
    *,
    group: str = GROUP,
    outbox: OutboxDrainer | None = None,
) -> ConsumerRunner:
    """The consumer; ``outbox`` is the process's drainer (without one, batches drain it)."""
    kafka = settings.kafka
    producer = create_producer(kafka, client_id="siyu-segment")
    outbox = outbox or OutboxDrainer(pool, lambda: producer, name="segment-outbox")
    consumer = create_consumer(kafka, group_id=group, client_id="siyu-segment")
    topics = Topics.with_prefix(kafka.topic_prefix)
    return ConsumerRunner(
        consumer,
        topics=[kafka.topic(TOUCHPOINTS)],
        group=group,
        decode=decode,
        process=make_process(pool, tenants, topics, outbox),
        dlq=DeadLetterQueue(producer, kafka.topic(TOUCHPOINTS_DLQ), group=group),
        dlq_limit=DlqLimit.of(kafka),
        max_batch=kafka.max_batch,
    )


def announce_catalogues(settings: Settings, pool: ConnectionPool, tenants: TenantRegistry) -> None:
    """Every tenant's catalogue into the outbox (the process's drainer publishes it)."""
    count = queue_all(pool, tenants.tenants, Topics.with_prefix(settings.kafka.topic_prefix))
    log.info("catalogues_queued", tenants=count)


def main(settings: Settings, *, metrics_port: int, metrics_host: str = "127.0.0.1") -> int:
    tenants = load_tenants(settings.tenants_path)
    settings.require_kafka()
    pool = create_pool(
        settings.require_database(), name="segment", schema="segment", timeouts=settings.worker_db
    )
    outbox = outbox_drainer(settings, pool)
    runner = build_runner(settings, pool, tenants, outbox=outbox)

    checks = {"postgres": postgres_check(pool), "kafka": polled_check(runner)}
    ops = create_ops_app(__name__, checks)
    server = BackgroundServer(ops, metrics_host, metrics_port).start()
    runner.install_signal_handlers()
    log.info("segment_consumer_starting", metrics_port=server.port)
    # WeCom contact detail, fetched beside the runner: the partitions never wait on WeCom.
    enricher = None
    if settings.wecom_enrich:
        enricher = Enricher(
            pool,
            tenants,
            settings.kafka,
            api_base=settings.wecom_api_base,
            rate=settings.wecom_rate,
        ).start()
    # Time-driven evaluation beside the runner (every replica; rows are claimed, not shared).
    ticker = Ticker(
        pool,
        lambda: tenants.tenants,
        Topics.with_prefix(settings.kafka.topic_prefix),
        interval_s=settings.segment_tick_s,
        after_batch=outbox.publish_soon,
    ).start()
    outbox.start()
    try:
        announce_catalogues(settings, pool, tenants)
        runner.run()
    finally:
        ticker.stop()
        if enricher is not None:
            enricher.stop()
        outbox.stop()
        server.stop()
        pool.close()
    return 0
