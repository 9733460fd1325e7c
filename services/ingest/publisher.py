"""Durable hand-off of touchpoints: Kafka first, a Postgres outbox when the broker is away.

A webhook is answered 200 only after one of the two holds the event:
1. the broker acknowledged it (idempotent producer, acks=all), within a bounded wait; or
2. it is committed in ``ingest.outbox`` (synchronous commit), and the replayer publishes it later.
If neither is possible the request fails with 503 and WeChat retries (docs/platform.md,
"Delivery and retries").

A touchpoint outreach acts on has a signal beside it (shared/signals.py, ``siyu.signals.v1``):
both records go in the same hand-off, so both or neither are held. The broker acknowledged every
record of the batch, or the outbox holds them all in one transaction (a batch the broker took in
part is stored whole and goes out again: consumers of both topics dedupe by event id), or the
request fails. No touchpoint is accepted without its signal.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import psycopg
import structlog
from kafka import KafkaProducer
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from services.ingest.errors import Refused
from services.ingest.metrics import EVENTS, OUTBOX_DEPTH
from services.ingest.shredding import PersonKeys
from shared.envelope import Touchpoint
from shared.kafka.producer import Record, close_quietly, publish
from shared.outbox import drain
from shared.signals import signal_value

log = structlog.get_logger("siyu.ingest.publisher")


class Publisher:
    def __init__(
        self,
        producer_factory,
        pool: ConnectionPool,
        topic: str,
        *,
        ack_timeout_s: float = 2.0,
        keys: PersonKeys | None = None,
        signals_topic: str | None = None,
    ):
        self._producer_factory = producer_factory
        self.keys = keys  # seals each person's raw payload (services/ingest/shredding.py)
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()
        self.pool = pool
        self.topic = topic
        self.signals_topic = signals_topic  # None: no signals (tests of the touchpoints alone)
        self.ack_timeout_s = ack_timeout_s

    def producer(self) -> KafkaProducer:
        # Created lazily: after the server forks its workers, and again after a failure.
        with self._lock:
            if self._producer is None:
                self._producer = self._producer_factory()
            return self._producer

    def discard(self, producer: KafkaProducer) -> None:
        """Drop a producer that failed; the next publish creates a fresh one.

        A failed idempotent producer may be stuck for good: after a broker lost its state (an
        in-memory dev broker restarted, or a fenced producer id) kafka-python keeps failing
        InitProducerId and aborts every batch. A new producer gets a new id.
        """
        with self._lock:
            if self._producer is not producer:
                return  # another thread already replaced it
            self._producer = None
        # Closing flushes first and may wait out delivery_timeout_ms: not on a request thread.
        threading.Thread(target=close_quietly, args=(producer,), daemon=True).start()

    def _records(self, touchpoints: Sequence[Touchpoint]) -> list[tuple[Touchpoint, Record]]:
        """Each touchpoint's record, and its signal's beside it when it has one."""
        out = []
        for tp in touchpoints:
            out.append((tp, Record(self.topic, tp.key, tp.to_json())))
            signal = signal_value(tp) if self.signals_topic else None
            if signal is not None:
                out.append((tp, Record(self.signals_topic, tp.key, signal)))
        return out

    def publish(self, touchpoints: Sequence[Touchpoint]) -> str:
        """Make the touchpoints durable; return "kafka" or "outbox", or raise Refused(503)."""
        if not touchpoints:
            return "kafka"
        if self.keys is not None:
            touchpoints = self.keys.seal(touchpoints)
        records = self._records(touchpoints)
        producer = None
        try:
            producer = self.producer()
            publish(producer, [r for _, r in records], timeout=self.ack_timeout_s)
            for tp in touchpoints:
                EVENTS.labels(tenant=tp.tenant_id, type=tp.type, outcome="produced").inc()
            return "kafka"
        except Exception as exc:  # whatever the producer raised, the outbox still holds the event
            log.warning("broker_unavailable_using_outbox", error=str(exc)[:300])
            if producer is not None:
                self.discard(producer)
        try:
            self.store(touchpoints, records)
        except (psycopg.Error, PoolTimeout, PoolClosed) as exc:
            log.error("outbox_unavailable", error=str(exc)[:300])
            for tp in touchpoints:
                EVENTS.labels(tenant=tp.tenant_id, type=tp.type, outcome="refused").inc()
            raise Refused(
                "unavailable", "event store unavailable; retry later", status=503
            ) from None
        for tp in touchpoints:
            EVENTS.labels(tenant=tp.tenant_id, type=tp.type, outcome="outboxed").inc()
        return "outbox"

    def store(
        self, touchpoints: Sequence[Touchpoint], records: Sequence[tuple[Touchpoint, Record]]
    ) -> None:
        with self.pool.connection(timeout=2) as conn, conn.transaction():
            # The dev server runs with synchronous_commit=off; an accepted event must survive.
            conn.execute("SET LOCAL synchronous_commit TO on")
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO outbox (tenant_id, event_id, topic, key, value) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    [(tp.tenant_id, tp.event_id, r.topic, r.key, r.value) for tp, r in records],
                )

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close(timeout=5)
                self._producer = None


class OutboxReplayer:
    """Publishes outbox rows once the broker is back; safe to run in several processes."""

    def __init__(self, publisher: Publisher, *, batch: int = 200, interval_s: float = 1.0):
        self.publisher = publisher
        self.batch = batch
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def replay_once(self) -> int:
        """Publish up to ``batch`` rows; return how many were published and deleted."""
        count = drain(
            self.publisher.pool,
            self.publisher.producer,
            batch=self.batch,
            on_failure=self._failed,
        )
        if count:
            log.info("outbox_replayed", count=count)
        return count

    def _failed(self, producer: KafkaProducer | None, exc: Exception) -> None:
        log.warning("outbox_replay_waiting_for_broker", error=str(exc)[:300])
        if producer is not None:
            self.publisher.discard(producer)

    def depth(self) -> int:
        with self.publisher.pool.connection(timeout=2) as conn:
            return conn.execute("SELECT count(*) AS n FROM outbox").fetchone()["n"]

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                while self.replay_once() == self.batch and not self._stop.is_set():
                    pass
                OUTBOX_DEPTH.set(self.depth())
            except (psycopg.Error, PoolTimeout) as exc:
                log.warning("outbox_replay_failed", error=str(exc)[:300])

    def start(self) -> OutboxReplayer:
        self._thread = threading.Thread(target=self._loop, name="outbox-replayer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
