"""A transactional outbox: rows written with the state they describe, published after commit.

Both ingest (events accepted while the broker was away) and segment (stage changes and profiles
computed in the same transaction as the state) keep an ``outbox`` table of (topic, key, value).
``drain`` publishes the oldest rows and deletes them once the broker acknowledged; SKIP LOCKED
lets several processes drain at once. A crash between publish and delete republishes: consumers
of these topics are idempotent.
"""

from __future__ import annotations

from collections.abc import Callable

from kafka import KafkaProducer
from psycopg_pool import ConnectionPool

from shared.kafka.producer import Record, publish


def drain(
    pool: ConnectionPool,
    producer: Callable[[], KafkaProducer],
    *,
    batch: int = 200,
    timeout: float = 5.0,
    on_failure: Callable[[KafkaProducer | None, Exception], None] | None = None,
) -> int:
    """Publish up to ``batch`` rows; return how many were published and deleted."""
    with pool.connection(timeout=2) as conn, conn.transaction():
        rows = conn.execute(
            "SELECT id, topic, key, value FROM outbox ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
            (batch,),
        ).fetchall()
        if not rows:
            return 0
        records = [Record(r["topic"], r["key"], bytes(r["value"])) for r in rows]
        current = None
        try:
            current = producer()
            publish(current, records, timeout=timeout)
        except Exception as exc:  # broker away, or the producer could not be created
            if on_failure is None:
                raise
            on_failure(current, exc)
            return 0
        conn.execute("DELETE FROM outbox WHERE id = ANY(%s)", ([r["id"] for r in rows],))
    return len(rows)
