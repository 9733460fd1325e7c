"""Builds ingest's dependencies from settings: the one place that reads configuration."""

from __future__ import annotations

from collections.abc import Callable

from kafka import KafkaProducer
from psycopg_pool import ConnectionPool

from services.ingest.app import IngestDeps, create_app
from services.ingest.crypto import DEFAULT_MAX_AGE_S
from services.ingest.links import LinkSigner
from services.ingest.nonces import NonceCache
from services.ingest.publisher import OutboxReplayer, Publisher
from services.ingest.shredding import PersonKeys
from services.ingest.tokens import TokenStore
from shared.config import Settings
from shared.db import create_pool
from shared.errors import ConfigError
from shared.health import postgres_check
from shared.kafka.producer import create_producer
from shared.kafka.settings import KafkaSettings
from shared.kafka.topics import SIGNALS, TOUCHPOINTS
from shared.limits import DEFAULT_LIMITS, Limits
from shared.ratelimit import TenantLimiter, registry_limits
from shared.tenants import TenantRegistry, load_tenants

# Bounded waits so a broker outage falls back to the outbox well inside WeChat's 5 s.
INGEST_PRODUCER = {
    "bootstrap_timeout_ms": 1000,
    # Every request waits for its ack: batch only what arrives within 1 ms.
    "linger_ms": 1,  # kafka-python waits 30 s by default when the broker is down
    "max_block_ms": 1000,
    "request_timeout_ms": 2000,
    "delivery_timeout_ms": 3000,
}


def link_secret(settings: Settings) -> str:
    """``settings.link_secret`` (SIYU_LINK_SECRET), refused if too short to sign links with."""
    secret = settings.link_secret
    if len(secret) < 16:
        raise ConfigError("SIYU_LINK_SECRET must be set to at least 16 characters (signs links)")
    return secret


def build_deps(
    tenants: TenantRegistry,
    pool: ConnectionPool,
    kafka: KafkaSettings,
    secret: str,
    *,
    producer_factory: Callable[[], KafkaProducer] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> IngestDeps:
    publisher = Publisher(
        producer_factory
        or (lambda: create_producer(kafka, client_id="siyu-ingest", **INGEST_PRODUCER)),
        pool,
        kafka.topic(TOUCHPOINTS),
        keys=PersonKeys(pool),
        signals_topic=kafka.topic(SIGNALS),
    )
    return IngestDeps(
        tenants=tenants,
        publisher=publisher,
        tokens=TokenStore(pool),
        links=LinkSigner(secret, tenants),
        limiter=TenantLimiter(pool, registry_limits(tenants, limits)),
        nonces=NonceCache(pool, max_age_s=DEFAULT_MAX_AGE_S),
    )


def build_app(settings: Settings, *, schema: str = "ingest", replay: bool = True):
    tenants = load_tenants(settings.tenants_path)
    pool = create_pool(
        settings.require_database(),
        name="ingest",
        schema=schema,
        max_size=10,
        timeouts=settings.worker_db,
    )
    settings.require_kafka()
    deps = build_deps(tenants, pool, settings.kafka, link_secret(settings), limits=settings.limits)
    publisher = deps.publisher

    def kafka_ready():
        # A metadata round trip: fails within max_block_ms when the broker is away.
        if not publisher.producer().partitions_for(publisher.topic):
            raise ConnectionError(f"topic {publisher.topic} has no partitions")

    app = create_app(deps, checks={"postgres": postgres_check(pool), "kafka": kafka_ready})
    replayer = OutboxReplayer(publisher).start() if replay else None
    return app, publisher, replayer
