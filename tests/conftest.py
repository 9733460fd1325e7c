"""Test session: one real PostgreSQL and one real Kafka-protocol broker on free ports.

Each test gets its own schema and topic prefix, so tests share the servers and run in any order.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import psycopg
import pytest

from shared.config import KafkaSettings
from shared.devstack.broker import EmbeddedBroker
from shared.devstack.ports import free_port
from shared.devstack.postgres import EmbeddedPostgres

# Fast group joins on the embedded broker (STACK.md).
FAST_GROUPS = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 1000,
    "max_poll_interval_ms": 10000,
}


@dataclass
class Stack:
    postgres: EmbeddedPostgres
    broker: EmbeddedBroker

    @property
    def dsn(self) -> str:
        return self.postgres.dsn

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    base = tmp_path_factory.mktemp("stack")
    postgres = EmbeddedPostgres(base / "pg", port=free_port())
    broker = EmbeddedBroker(base / "broker", port=free_port())
    try:
        postgres.start()
        broker.start()
        yield Stack(postgres, broker)
    finally:
        broker.stop()
        postgres.stop()


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def kafka(stack, unique) -> KafkaSettings:
    """Settings whose topics are private to this test (prefix), 3 partitions each."""
    return KafkaSettings(
        bootstrap=stack.bootstrap, topic_prefix=f"t{unique}.", partitions=3, **FAST_GROUPS
    )


@pytest.fixture
def schema(stack, unique):
    """A schema private to this test, dropped afterwards."""
    name = f"t_{unique}"
    yield name
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
