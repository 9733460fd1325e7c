"""A staff override reaches siyu.stage-changes.v1 within a second with no other traffic: the admin
API process and the segment consumer process each drain the segment outbox on a timer.

Real PostgreSQL and broker of the test session, the real API app and consumer wiring; the topic is
read back with a plain Kafka consumer, polled until a deadline.
"""

from __future__ import annotations

import time
from dataclasses import replace

import psycopg
import pytest
from kafka import KafkaConsumer, TopicPartition

from services.segment.consumer import build_runner, outbox_drainer
from shared import messages
from shared.config import Settings
from shared.db import create_pool
from shared.kafka.topics import STAGE_CHANGES, ensure_topics
from shared.migrations import migrate_service
from shared.outbox import LOCK_NAMESPACE
from shared.tenants import DEMO_TENANTS_PATH, load_tenants
from siyu.api import SEGMENT_OUTBOX, create_app
from tests.integration.api.conftest import issue_tokens
from tests.integration.api.test_segment_people import People, seed
from tests.kafka_helpers import RunnerThread, read_topic

TENANTS = load_tenants(DEMO_TENANTS_PATH)
DEADLINE_S = 1.0


@pytest.fixture
def segment_schema(stack, schema):
    """The seeded segment state of tests/integration/api (李工 is in examination), with its outbox emptied:
    no traffic and nothing queued before the override."""
    name = f"{schema}_seg"
    migrate_service(stack.dsn, "outreach", schema=schema)
    migrate_service(stack.dsn, "segment", schema=name)
    seed(stack.dsn, name)
    with psycopg.connect(stack.dsn, options=f"-c search_path={name}", autocommit=True) as conn:
        conn.execute("DELETE FROM outbox")
    yield name
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def api_app(stack, schema: str, segment_schema: str, settings: Settings) -> People:
    pool = create_pool(stack.dsn, name="api-test", schema=schema, max_size=4, timeout=3)
    schemas = {"outreach": schema, "segment": segment_schema}
    app = create_app(
        settings, pool=pool, schema_for=lambda s: schemas.get(s, s), token_cache_ttl_s=0
    )
    built = People(app.test_client(), app, pool, schema)
    built.segment_schema, built.settings = segment_schema, settings
    issue_tokens(built)
    return built


class StageChanges:
    """A reader of the stage-changes topic, positioned before the override is made."""

    def __init__(self, kafka):
        self.consumer = KafkaConsumer(
            bootstrap_servers=kafka.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50
        )
        topic = kafka.topic(STAGE_CHANGES)
        self.consumer.assign(
            [TopicPartition(topic, p) for p in self.consumer.partitions_for_topic(topic)]
        )
        self.consumer.seek_to_beginning()
        self.consumer.poll(timeout_ms=100)  # metadata and positions settled before the clock runs

    def wait_for(self, subject_id: str, deadline: float) -> dict | None:
        while time.monotonic() < deadline:
            for batch in self.consumer.poll(timeout_ms=50).values():
                for record in batch:
                    change = messages.decode(messages.STAGE_CHANGE, record.value)
                    if change["subject_id"] == subject_id:
                        return change
        return None

    def close(self):
        self.consumer.close()


def override(people: People) -> tuple[str, float]:
    li = people.contact("李工")
    body = {"stage": "interest", "reason": "went quiet; nurture again"}
    response = people.call("POST", f"/contacts/{li}/stage", "operator", json=body)
    assert response.status_code == 200, response.get_json()
    return li, time.monotonic()


def assert_published_in_time(reader: StageChanges, li: str, done: float, operator: str):
    change = reader.wait_for(li, done + DEADLINE_S)
    assert change is not None, f"the override was not on the topic {DEADLINE_S} s later"
    assert (change["from_stage"], change["to_stage"], change["actor"]) == (
        "examination", "interest", operator,
    )  # fmt: skip


def test_the_api_process_publishes_an_override_within_a_second(
    stack, schema, kafka, segment_schema
):
    ensure_topics(kafka)
    settings = Settings(database_url=stack.dsn, kafka=kafka, tenants_path=DEMO_TENANTS_PATH)
    people = api_app(stack, schema, segment_schema, settings)
    reader = StageChanges(kafka)
    drainer = people.app.extensions[SEGMENT_OUTBOX]
    try:
        li, done = override(people)
        assert_published_in_time(reader, li, done, people.ids["operator"])
        assert people.seg("SELECT count(*) AS n FROM outbox")[0]["n"] == 0
    finally:
        reader.close()
        drainer.stop()
        drainer.pool.close()
        people.pool.close()


def test_the_segment_consumer_publishes_an_override_within_a_second(
    stack, schema, kafka, segment_schema
):
    ensure_topics(kafka)
    settings = Settings(database_url=stack.dsn, kafka=kafka, tenants_path=DEMO_TENANTS_PATH)
    # An API without Kafka: only the consumer's drainer can publish the override.
    people = api_app(
        stack, schema, segment_schema, replace(settings, kafka=replace(kafka, bootstrap=""))
    )
    assert SEGMENT_OUTBOX not in people.app.extensions
    pool = create_pool(stack.dsn, name="segment-test", schema=segment_schema, max_size=4)
    outbox = outbox_drainer(settings, pool)  # as `siyu segment consume` wires it
    runner = build_runner(settings, pool, TENANTS, group=f"g-{schema}", outbox=outbox)
    reader = StageChanges(kafka)
    try:
        with RunnerThread(runner):
            outbox.start()
            li, done = override(people)
            assert_published_in_time(reader, li, done, people.ids["operator"])
    finally:
        outbox.stop()
        reader.close()
        pool.close()
        people.pool.close()


def test_one_drainer_at_a_time_keeps_the_outbox_in_order(stack, kafka, segment_schema):
    """While another process drains (holds the outbox's lock), a drain publishes nothing: rows
    are never published out of id order by two drainers at once."""
    ensure_topics(kafka)
    pool = create_pool(stack.dsn, name="segment-test", schema=segment_schema, max_size=2)
    with pool.connection() as conn:
        conn.execute(
            "INSERT INTO outbox (tenant_id, topic, key, value) VALUES ('acme', %s, 'k', 'v')",
            (kafka.topic(STAGE_CHANGES),),
        )
    drainer = outbox_drainer(Settings(database_url=stack.dsn, kafka=kafka,
                                      tenants_path=DEMO_TENANTS_PATH), pool)  # fmt: skip
    try:
        with psycopg.connect(stack.dsn, options=f"-c search_path={segment_schema}") as other:
            other.execute(
                "SELECT pg_advisory_xact_lock((%s::bigint << 32) | 'outbox'::regclass::oid::bigint)",
                (LOCK_NAMESPACE,),
            )
            assert drainer.drain_now() == 0  # the holder publishes them
            other.rollback()
        assert drainer.drain_now() == 1
    finally:
        drainer.stop()
        pool.close()


def test_a_batch_hands_its_messages_to_the_drainer_thread_and_stop_sends_the_rest(
    stack, kafka, segment_schema
):
    """publish_soon wakes the running drainer (the consumer goes on with its next batch); rows
    still queued when it stops are published by stop, not left for the next start."""
    ensure_topics(kafka)
    topic = kafka.topic(STAGE_CHANGES)
    pool = create_pool(stack.dsn, name="segment-test", schema=segment_schema, max_size=2)

    def queue(n: int, key: str) -> None:
        with pool.connection() as conn:
            for i in range(n):
                conn.execute(
                    "INSERT INTO outbox (tenant_id, topic, key, value) VALUES ('acme', %s, %s, %s)",
                    (topic, key, f"{key}-{i}".encode()),
                )

    drainer = outbox_drainer(Settings(database_url=stack.dsn, kafka=kafka,
                                      tenants_path=DEMO_TENANTS_PATH), pool)  # fmt: skip
    drainer.interval_s = 3600.0  # only a wake-up or stop publishes
    drainer.start()
    try:
        queue(3, "soon")
        drainer.publish_soon()
        assert len(read_topic(kafka, topic, 3, timeout=10)) == 3
        queue(250, "rest")  # more than one drain batch (200)
    finally:
        drainer.stop()
    records = read_topic(kafka, topic, 253, timeout=20)
    assert sorted(r.value for r in records if r.key == b"rest") == sorted(
        f"rest-{i}".encode() for i in range(250)
    )
    with pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM outbox").fetchone()["n"] == 0
    pool.close()
