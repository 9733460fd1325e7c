"""Producer factory and synchronous publishing: success means the broker acknowledged (acks=all)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import structlog
from kafka import KafkaProducer
from kafka.errors import KafkaError

from shared.errors import DeliveryError
from shared.kafka.settings import KafkaSettings
from shared.metrics import KAFKA_PRODUCED

log = structlog.get_logger(__name__)

Headers = Sequence[tuple[str, bytes]]


@dataclass(frozen=True)
class Record:
    topic: str
    key: str
    value: bytes | None  # None: a tombstone (compacted topics forget the key)
    headers: Headers = ()


def create_producer(kafka: KafkaSettings, *, client_id: str, **overrides) -> KafkaProducer:
    """Idempotent, acks=all; a short linger batches concurrent requests without adding latency."""
    config = {
        "bootstrap_servers": kafka.bootstrap,
        "client_id": client_id,
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 5,
        "batch_size": 64 * 1024,
        "max_in_flight_requests_per_connection": 5,
        "request_timeout_ms": 10000,
        # Bounded: a webhook must fail (and fall back) long before WeChat's 5 s give-up.
        "delivery_timeout_ms": 30000,
        "max_block_ms": 10000,
        **kafka.security.client_config(),
    }
    config.update(overrides)
    return KafkaProducer(**config)


def publish(producer: KafkaProducer, records: Iterable[Record], *, timeout: float = 10.0) -> list:
    """Send records and wait for every acknowledgement; raise DeliveryError if any failed.

    Returns the RecordMetadata of each record, in order. Records are sent before any wait, so a
    batch shares broker round trips.
    """
    futures = []
    try:
        for record in records:
            futures.append(
                (
                    record.topic,
                    producer.send(
                        record.topic,
                        key=record.key.encode("utf-8"),
                        value=record.value,
                        headers=list(record.headers),
                    ),
                )
            )
    except KafkaError as exc:
        KAFKA_PRODUCED.labels(topic="-", outcome="error").inc(len(futures) or 1)
        raise DeliveryError(f"broker refused the record: {exc}") from exc
    results, failure = [], None
    for topic, future in futures:
        try:
            results.append(future.get(timeout=timeout))
            KAFKA_PRODUCED.labels(topic=topic, outcome="ok").inc()
        except KafkaError as exc:
            KAFKA_PRODUCED.labels(topic=topic, outcome="error").inc()
            failure = failure or exc
    if failure is not None:
        raise DeliveryError(f"broker did not acknowledge: {failure}") from failure
    return results


def close_quietly(producer: KafkaProducer, timeout: float = 5.0) -> None:
    """Close a producer that has failed already: this only frees its thread and sockets."""
    try:
        producer.close(timeout=timeout)
    except Exception as exc:
        log.debug("producer_close_failed", error=str(exc)[:200])
