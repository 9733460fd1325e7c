"""`siyu ingest erasures`: ingest's part of erasing a person (docs/privacy.md).

Consumes ``siyu.erasures.v1`` (announced by segment, services/segment/erasure.py) in the
``siyu-ingest-erasures`` group and, per erasure, in one transaction of the ingest schema:
- destroys the person's keys (``person_keys``): their raw payloads left on the touchpoints topic
  and its dead letters can no longer be decrypted (services/ingest/shredding.py);
- deletes their touchpoints still waiting in the outbox (accepted while the broker was away),
  which would otherwise reach the topic after the erasure.
Both are idempotent: a redelivered erasure finds nothing more to do.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import structlog
from psycopg import Connection
from psycopg_pool import ConnectionPool

from services.ingest.shredding import destroy_keys
from shared.config import Settings
from shared.db import create_pool
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
from shared.kafka.topics import ERASURES, TOUCHPOINTS_DLQ
from shared.privacy import PERSON_KINDS, decode_erasure, identity_hash

log = structlog.get_logger("siyu.ingest.erasures")

GROUP = "siyu-ingest-erasures"


def decode(message: Message) -> dict[str, Any]:
    try:
        return decode_erasure(message.value)
    except Exception as exc:  # not JSON or not the contract: the DLQ says why
        raise PoisonMessage(message, f"not a valid erasure: {exc}") from exc


def _hashes_of(tenant_id: str, value: bytes) -> set[str]:
    try:
        identity = json.loads(bytes(value)).get("identity") or {}
    except (ValueError, AttributeError):
        return set()
    return {identity_hash(tenant_id, k, identity[k]) for k in PERSON_KINDS if identity.get(k)}


def forget(conn: Connection, erasure: dict[str, Any]) -> tuple[int, int]:
    """Destroy the person's keys and drop their queued touchpoints; (keys, outbox rows)."""
    tenant, hashes = erasure["tenant_id"], set(erasure["identity_hashes"])
    if not hashes:
        return 0, 0
    keys = destroy_keys(conn, tenant, sorted(hashes))
    # The outbox is empty unless the broker was away: reading a tenant's rows is cheap.
    rows = conn.execute(
        "SELECT id, value FROM outbox WHERE tenant_id = %s FOR UPDATE", (tenant,)
    ).fetchall()
    doomed = [r["id"] for r in rows if _hashes_of(tenant, r["value"]) & hashes]
    if doomed:
        conn.execute("DELETE FROM outbox WHERE id = ANY(%s)", (doomed,))
    return keys, len(doomed)


def make_process(pool: ConnectionPool) -> Callable[[list[Decoded[dict]]], None]:
    def process(batch: list[Decoded[dict]]) -> None:
        with pool.connection() as conn, conn.transaction():
            for item in batch:
                erasure = item.payload
                keys, queued = forget(conn, erasure)
                log.info("person_forgotten", tenant_id=erasure["tenant_id"],
                         contact_id=erasure["contact_id"], keys=keys, outbox=queued)  # fmt: skip

    return process


def build_runner(settings: Settings, pool: ConnectionPool, *, group: str = GROUP):
    kafka = settings.kafka
    producer = create_producer(kafka, client_id="siyu-ingest-erasures")
    return ConsumerRunner(
        create_consumer(kafka, group_id=group, client_id="siyu-ingest-erasures"),
        topics=[kafka.topic(ERASURES)],
        group=group,
        decode=decode,
        process=make_process(pool),
        # Ingest's only consumer: its rare refusals join the touchpoint dead letters (group
        # header siyu-ingest-erasures) rather than a topic of their own.
        dlq=DeadLetterQueue(producer, kafka.topic(TOUCHPOINTS_DLQ), group=group),
        dlq_limit=DlqLimit.of(kafka),
        max_batch=kafka.max_batch,
    )


def main(
    settings: Settings, *, metrics_port: int, metrics_host: str = "127.0.0.1", schema="ingest"
) -> int:
    settings.require_kafka()
    pool = create_pool(
        settings.require_database(),
        name="ingest-erasures",
        schema=schema,
        timeouts=settings.worker_db,
    )
    runner = build_runner(settings, pool)

    checks = {"postgres": postgres_check(pool), "kafka": polled_check(runner)}
    ops = create_ops_app(__name__, checks)
    server = BackgroundServer(ops, metrics_host, metrics_port).start()
    runner.install_signal_handlers()
    log.info("ingest_erasures_starting", metrics_port=server.port)
    try:
        runner.run()
    finally:
        server.stop()
        pool.close()
    return 0
