"""Test session: one real PostgreSQL and one real Kafka-protocol broker on free ports.

Each test gets its own schema and topic prefix, so tests share the servers and run in any order.
SIYU_TEST_KAFKA_BOOTSTRAP=host:port runs the suite against that Kafka (an Apache Kafka cluster,
say) instead of starting the embedded broker; tests that start brokers of their own (to stop or
kill them) still use embedded ones.

The tree mirrors the source: ``tests/unit/<package>/test_<module>.py`` needs no server (``make
test-fast`` runs it alone); ``tests/integration/``, ``tests/chaos/`` and ``tests/browser/`` are
marked ``integration`` by their folder, and a unit test that asks for the servers is refused at collection.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from shared.devstack.broker import EmbeddedBroker
from shared.devstack.ports import free_port
from shared.devstack.postgres import EmbeddedPostgres
from shared.kafka.settings import KafkaSettings
from shared.kafka.tansu import FETCH_TIMINGS, GROUP_TIMINGS
from shared.migrations import migrate_service
from shared.privacy import PRIVACY_KEY_ENV, install_privacy_key

EXTERNAL_KAFKA_ENV = "SIYU_TEST_KAFKA_BOOTSTRAP"
# The processes tests start (and those they run in-process) share one privacy key, as a
# deployment's do; a test of its absence removes it.
os.environ.setdefault(PRIVACY_KEY_ENV, "siyu-test-privacy-key-0123456789")


@pytest.fixture(autouse=True)
def _privacy_key(monkeypatch):
    """Each test hashes with the key its processes get, whatever a test before installed (a CLI
    run in-process installs its Settings' key, as a process does at start)."""
    monkeypatch.setattr("shared.privacy._installed", "")
    install_privacy_key(os.environ.get(PRIVACY_KEY_ENV, ""))


TESTS = Path(__file__).resolve().parent
SERVER_FOLDERS = (TESTS / "integration", TESTS / "chaos", TESTS / "browser")


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = Path(item.path)
        if any(path.is_relative_to(folder) for folder in SERVER_FOLDERS):
            item.add_marker(pytest.mark.integration)
        elif path.is_relative_to(TESTS / "unit") and "stack" in item.fixturenames:
            raise pytest.UsageError(
                f"{item.nodeid} uses the PostgreSQL/broker stack: it belongs in tests/integration/"
            )


@dataclass
class Stack:
    postgres: EmbeddedPostgres
    broker: EmbeddedBroker | None  # None: the external Kafka of SIYU_TEST_KAFKA_BOOTSTRAP
    external_bootstrap: str | None = None

    @property
    def dsn(self) -> str:
        return self.postgres.dsn

    @property
    def bootstrap(self) -> str:
        return self.external_bootstrap or self.broker.bootstrap

    @property
    def embedded_broker(self) -> bool:
        """True when the session's broker is the embedded one (Tansu), with its deviations."""
        return self.broker is not None


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    base = tmp_path_factory.mktemp("stack")
    postgres = EmbeddedPostgres(base / "pg", port=free_port())
    external = os.environ.get(EXTERNAL_KAFKA_ENV) or None
    broker = None if external else EmbeddedBroker(base / "broker", port=free_port())
    try:
        postgres.start()
        if broker is not None:
            broker.start()
        yield Stack(postgres, broker, external)
    finally:
        if broker is not None:
            broker.stop()
        postgres.stop()


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def kafka(stack, unique) -> KafkaSettings:
    """Settings whose topics are private to this test (prefix), 3 partitions each; fast group
    joins and short fetch waits, which the embedded broker needs (shared/kafka/tansu.py) and
    Kafka allows."""
    return KafkaSettings(
        bootstrap=stack.bootstrap,
        topic_prefix=f"t{unique}.",
        partitions=3,
        **GROUP_TIMINGS,
        **FETCH_TIMINGS,
    )


@pytest.fixture
def schema(stack, unique):
    """A schema private to this test, dropped afterwards."""
    name = f"t_{unique}"
    yield name
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def own_database(stack, unique):
    """A database of its own with every service migrated, so that processes started by the test
    use their default schemas (``search_path`` is not theirs to set); dropped afterwards."""
    name = f"db_{unique}"
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = stack.dsn.rsplit("/", 1)[0] + f"/{name}"
    for service in ("ingest", "segment", "outreach"):
        migrate_service(dsn, service)
    yield dsn
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
