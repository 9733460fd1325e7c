"""A transactional outbox: rows written with the state they describe, published after commit.

Both ingest (events accepted while the broker was away) and segment (stage changes and profiles
computed in the same transaction as the state, by the consumer or by a staff override through
the admin API) keep an ``outbox`` table of (topic, key, value). ``drain`` publishes the oldest
rows and deletes them once the broker acknowledged. A crash between publish and delete
republishes: consumers of these topics are idempotent.

One drainer per table at a time (a transaction-scoped advisory lock on the table): rows go out in
id order, so two changes of one key (a profile snapshot on the compacted topic) never swap, however
many processes drain. ``OutboxDrainer`` drains on a timer, so rows written without traffic behind
them (a staff override) go out within ``interval_s``, not with the next touchpoint batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg
import structlog
from kafka import KafkaProducer
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from shared.kafka.producer import Record, close_quietly, publish

log = structlog.get_logger("siyu.outbox")

# High half of the advisory lock key; the low half is the outbox table's oid.
LOCK_NAMESPACE = 0x4F42  # "OB"


def drain(
    pool: ConnectionPool,
    producer: Callable[[], KafkaProducer],
    *,
    batch: int = 200,
    timeout: float = 5.0,
    on_failure: Callable[[KafkaProducer | None, Exception], None] | None = None,
) -> int:
    """Publish up to ``batch`` rows; return how many were published and deleted (0 as well when
    another process is draining this outbox: it publishes them)."""
    with pool.connection(timeout=2) as conn, conn.transaction():
        locked = conn.execute(
            "SELECT pg_try_advisory_xact_lock((%s::bigint << 32) | 'outbox'::regclass::oid::bigint)"
            " AS ok",
            (LOCK_NAMESPACE,),
        ).fetchone()
        if not locked["ok"]:
            return 0
        rows = conn.execute(
            "SELECT id, topic, key, value FROM outbox ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
            (batch,),
        ).fetchall()
        if not rows:
            return 0
        # A NULL value is a Kafka tombstone (an erased profile leaves the compacted topic).
        records = [
            Record(r["topic"], r["key"], None if r["value"] is None else bytes(r["value"]))
            for r in rows
        ]
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


class OutboxDrainer:
    """Drains one outbox on a timer, and at once through ``drain_now`` (after a batch).

    Calls are serialised in the process, so the timer and the consumer never race each other.
    With ``owns_producer`` the drainer creates its producer on first use, replaces it after a
    failure (a failed idempotent producer may stay stuck: see services/ingest/publisher.py) and
    closes it on ``stop``; otherwise ``producer`` returns one the caller manages.
    """

    def __init__(
        self,
        pool: ConnectionPool,
        producer: Callable[[], KafkaProducer],
        *,
        owns_producer: bool = False,
        interval_s: float = 0.25,
        batch: int = 200,
        name: str = "outbox-drainer",
    ):
        self.pool = pool
        self.interval_s = interval_s
        self.batch = batch
        self.name = name
        self._factory = producer
        self._owns = owns_producer
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def _get_producer(self) -> KafkaProducer:
        if not self._owns:
            return self._factory()
        if self._producer is None:
            self._producer = self._factory()
        return self._producer

    def _failed(self, producer: KafkaProducer | None, exc: Exception) -> None:
        log.warning("outbox_waiting_for_broker", drainer=self.name, error=str(exc)[:300])
        if self._owns and producer is not None and producer is self._producer:
            self._producer = None
            close_quietly(producer)

    def drain_now(self) -> int:
        """Publish everything queued (until a batch comes back short); return how many."""
        total = 0
        with self._lock:
            while True:
                count = drain(
                    self.pool, self._get_producer, batch=self.batch, on_failure=self._failed
                )
                total += count
                if count < self.batch or self._stop.is_set():
                    return total

    def _loop(self) -> None:
        if self._owns:  # connect now, so that the first row does not wait for the handshake
            with self._lock:
                try:
                    self._get_producer()
                except Exception as exc:  # the broker is away: the first drain retries
                    self._failed(None, exc)
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.drain_now()
            except (psycopg.Error, PoolTimeout) as exc:  # the database is away: next tick
                log.warning("outbox_drain_failed", drainer=self.name, error=str(exc)[:300])
            except PoolClosed:
                return

    def publish_soon(self) -> None:
        """Publish what is queued: at once on the drainer's thread when it runs (the caller goes
        on meanwhile: a consumer's next batch), else in the calling thread."""
        if self._thread is not None and self._thread.is_alive():
            self._wake.set()
        else:
            self.drain_now()

    def start(self) -> OutboxDrainer:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
            # What the last batch handed over (publish_soon) goes out now, not at the next start.
            try:
                with self._lock:
                    while drain(self.pool, self._get_producer, batch=self.batch,
                                on_failure=self._failed) == self.batch:  # fmt: skip
                        pass
            except (psycopg.Error, PoolTimeout, PoolClosed) as exc:
                log.warning("outbox_final_drain_failed", drainer=self.name, error=str(exc)[:300])
        with self._lock:
            if self._producer is not None:
                close_quietly(self._producer)
                self._producer = None
