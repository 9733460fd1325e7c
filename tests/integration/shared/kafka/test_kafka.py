from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import UTC, datetime

import psycopg
import pytest
from kafka import KafkaConsumer, TopicPartition
from prometheus_client import REGISTRY

from shared.envelope import Identity, Touchpoint, decode_touchpoint, make_event_id
from shared.kafka.consumer import (
    ConsumerRunner,
    DeadLetterQueue,
    PoisonMessage,
    create_consumer,
)
from shared.kafka.producer import Record, create_producer, publish
from shared.kafka.topics import (
    PROFILES,
    STAGE_CHANGES,
    TOPICS,
    TOUCHPOINTS,
    TOUCHPOINTS_DLQ,
    ensure_topics,
)
from tests.kafka_helpers import RunnerThread, read_topic, wait_until


def touchpoint(n: int, type_: str = "biz.order.paid") -> Touchpoint:
    now = datetime(2026, 11, 24, 1, 30, tzinfo=UTC)
    return Touchpoint(
        event_id=make_event_id("acme", "api", f"order-{n}"),
        tenant_id="acme",
        source="api",
        type=type_,
        occurred_at=now,
        received_at=now,
        identity=Identity(crm_id=f"C-{n % 7}"),
        attributes={"amount": n},
    )


def as_record(kafka, tp: Touchpoint) -> Record:
    return Record(kafka.topic(TOUCHPOINTS), tp.key, tp.to_json())


class Effects:
    """A tiny idempotent 'service': stores each event once in its own table."""

    def __init__(self, dsn: str, schema: str):
        self.dsn, self.schema = dsn, schema
        self.seen: list[str] = []
        self.fail_times = 0
        self.reject_type: str | None = None
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {schema}.effects "
                "(event_id text PRIMARY KEY, amount int)"
            )

    def process(self, batch) -> None:
        if self.fail_times:
            self.fail_times -= 1
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        for item in batch:
            if item.payload.type == self.reject_type:
                raise ValueError(f"cannot apply {item.payload.type}")
        with psycopg.connect(self.dsn) as conn, conn.transaction():
            for item in batch:
                tp = item.payload
                conn.execute(
                    f"INSERT INTO {self.schema}.effects VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    (tp.event_id, tp.attributes["amount"]),
                )
        self.seen.extend(item.payload.event_id for item in batch)

    def count(self) -> int:
        with psycopg.connect(self.dsn) as conn:
            return conn.execute(f"SELECT count(*) FROM {self.schema}.effects").fetchone()[0]


def make_runner(kafka, effects: Effects, producer, group: str = "g-test") -> ConsumerRunner:
    consumer = create_consumer(
        kafka,
        group_id=group,
        client_id="test",
        session_timeout_ms=kafka.session_timeout_ms,
        heartbeat_interval_ms=kafka.heartbeat_interval_ms,
        max_poll_interval_ms=kafka.max_poll_interval_ms,
    )
    return ConsumerRunner(
        consumer,
        topics=[kafka.topic(TOUCHPOINTS)],
        group=group,
        decode=lambda m: decode_touchpoint(m.value),
        process=effects.process,
        dlq=DeadLetterQueue(producer, kafka.topic(TOUCHPOINTS_DLQ), group=group),
        commit_interval_s=0.2,
        backoff_s=(0.05, 0.2),
    )


@pytest.fixture
def producer(kafka):
    ensure_topics(kafka)
    p = create_producer(kafka, client_id="test")
    yield p
    p.close()


def test_topics_are_created_once_with_configured_partitions(kafka):
    created = ensure_topics(kafka)
    assert sorted(created) == sorted(kafka.topic(s.name) for s in TOPICS)
    assert ensure_topics(kafka) == []
    probe = KafkaConsumer(bootstrap_servers=kafka.bootstrap)
    try:
        for name in (TOUCHPOINTS, TOUCHPOINTS_DLQ, PROFILES, STAGE_CHANGES):
            assert len(probe.partitions_for_topic(kafka.topic(name))) == 3
    finally:
        probe.close()


def test_publish_returns_only_after_the_broker_has_it(kafka, producer):
    tps = [touchpoint(i) for i in range(5)]
    metadata = publish(producer, [as_record(kafka, tp) for tp in tps])
    assert len(metadata) == 5
    assert all(m.offset >= 0 for m in metadata)
    records = read_topic(kafka, kafka.topic(TOUCHPOINTS), 5)
    assert sorted(r.value for r in records) == sorted(tp.to_json() for tp in tps)
    assert {r.key.decode() for r in records} == {tp.key for tp in tps}


def test_restart_resumes_from_the_committed_offset(stack, kafka, producer, schema):
    effects = Effects(stack.dsn, schema)
    publish(producer, [as_record(kafka, touchpoint(i)) for i in range(20)])
    with RunnerThread(make_runner(kafka, effects, producer)):
        wait_until(lambda: effects.count() == 20, message="first 20 stored")
    first_run = list(effects.seen)
    assert len(first_run) == 20

    publish(producer, [as_record(kafka, touchpoint(i)) for i in range(20, 30)])
    effects.seen.clear()
    with RunnerThread(make_runner(kafka, effects, producer)):
        wait_until(lambda: effects.count() == 30, message="next 10 stored")
    # The second consumer started where the first committed: it saw only the new ten.
    assert sorted(effects.seen) == sorted(touchpoint(i).event_id for i in range(20, 30))


def test_poison_messages_go_to_the_dlq_and_the_consumer_continues(stack, kafka, producer, schema):
    effects = Effects(stack.dsn, schema)
    effects.reject_type = "biz.order.refunded"
    topic = kafka.topic(TOUCHPOINTS)
    records = [
        as_record(kafka, touchpoint(1)),
        Record(topic, "acme:C-1", b"\xff not json"),
        Record(topic, "acme:C-1", json.dumps({"schema": "touchpoint/1"}).encode()),
        as_record(kafka, touchpoint(2, "biz.order.refunded")),
        as_record(kafka, touchpoint(3)),
    ]
    publish(producer, records)
    with RunnerThread(make_runner(kafka, effects, producer)):
        wait_until(lambda: effects.count() == 2, message="good events stored")
        dead = read_topic(kafka, kafka.topic(TOUCHPOINTS_DLQ), 3)
        # After the poison, later events still flow.
        publish(producer, [as_record(kafka, touchpoint(4))])
        wait_until(lambda: effects.count() == 3, message="consumer continued")

    assert len(dead) == 3
    letters = [json.loads(r.value) for r in dead]
    by_stage = sorted((d["error"]["stage"], d["error"]["type"]) for d in letters)
    assert by_stage == [
        ("decode", "EnvelopeError"),
        ("decode", "EnvelopeError"),
        ("process", "ValueError"),
    ]
    for letter in letters:
        assert letter["schema"] == "dead-letter/1"
        assert letter["source"]["topic"] == topic
        assert letter["source"]["offset"] >= 0
        assert letter["error"]["message"]
    undecodable = next(d for d in letters if d["envelope"] is None)
    assert undecodable["value_base64"]  # the original bytes are kept for replay
    rejected = next(d for d in letters if d["error"]["stage"] == "process")
    assert rejected["envelope"]["event_id"] == touchpoint(2, "biz.order.refunded").event_id
    assert "cannot apply" in rejected["error"]["message"]
    invalid = next(d for d in letters if d["envelope"] == {"schema": "touchpoint/1"})
    assert "event_id" in invalid["error"]["details"]


def test_explicit_poison_from_the_process_step(stack, kafka, producer, schema):
    effects = Effects(stack.dsn, schema)

    def process(batch):
        for item in batch:
            if item.payload.attributes["amount"] == 13:
                raise PoisonMessage(item.message, "amount 13 is refused")
        effects.process(batch)

    publish(producer, [as_record(kafka, touchpoint(i)) for i in (12, 13, 14)])
    runner = make_runner(kafka, effects, producer)
    runner.process = process
    with RunnerThread(runner):
        wait_until(lambda: effects.count() == 2)
        dead = read_topic(kafka, kafka.topic(TOUCHPOINTS_DLQ), 1)
    assert [json.loads(r.value)["error"]["message"] for r in dead] == ["amount 13 is refused"]


def test_transient_errors_retry_the_batch_without_dead_lettering(stack, kafka, producer, schema):
    effects = Effects(stack.dsn, schema)
    effects.fail_times = 3
    publish(producer, [as_record(kafka, touchpoint(i)) for i in range(10)])
    with RunnerThread(make_runner(kafka, effects, producer)):
        wait_until(lambda: effects.count() == 10, message="stored after retries")
    assert effects.fail_times == 0
    assert read_topic(kafka, kafka.topic(TOUCHPOINTS_DLQ), 0, timeout=1) == []


def test_redelivery_never_double_counts(stack, kafka, producer, schema):
    effects = Effects(stack.dsn, schema)
    same = [as_record(kafka, touchpoint(7)) for _ in range(3)]  # e.g. WeChat retries
    publish(producer, [*same, as_record(kafka, touchpoint(8))])
    with RunnerThread(make_runner(kafka, effects, producer)):
        wait_until(lambda: len(effects.seen) == 4)
    assert effects.count() == 2


def test_sigterm_commits_before_leaving(stack, kafka, producer, schema):
    publish(producer, [as_record(kafka, touchpoint(i)) for i in range(12)])
    effects = Effects(stack.dsn, schema)
    group = "g-sigterm"
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.shared.kafka.consumer_process",
            kafka.bootstrap,
            kafka.topic_prefix,
            group,
            stack.dsn,
            schema,
        ],
    )
    try:
        wait_until(lambda: effects.count() == 12, message="child stored all")
        child.send_signal(signal.SIGTERM)
        assert child.wait(30) == 0
    finally:
        if child.poll() is None:
            child.kill()
    probe = KafkaConsumer(bootstrap_servers=kafka.bootstrap, group_id=kafka.group(group))
    try:
        topic = kafka.topic(TOUCHPOINTS)
        committed = [probe.committed(TopicPartition(topic, p)) or 0 for p in range(3)]
    finally:
        probe.close()
    # The commit interval is 60 s, so these offsets can only come from the shutdown commit.
    assert sum(committed) == 12


def test_lag_is_reported_per_partition(stack, kafka, producer, schema):
    effects = Effects(stack.dsn, schema)
    # One key: all 30 records in one partition, consumed 5 at a time.
    tps = [touchpoint(i * 7) for i in range(30)]
    publish(producer, [as_record(kafka, tp) for tp in tps])
    runner = make_runner(kafka, effects, producer, group="g-lag")
    runner.max_batch = 5
    seen_lag = []

    def process(batch):
        for p in range(3):
            value = REGISTRY.get_sample_value(
                "siyu_consumer_lag",
                {"group": "g-lag", "topic": kafka.topic(TOUCHPOINTS), "partition": str(p)},
            )
            if value:
                seen_lag.append(value)
        effects.process(batch)

    runner.process = process
    with RunnerThread(runner):
        wait_until(lambda: effects.count() == 30)
    assert seen_lag
    assert max(seen_lag) >= 5
    assert seen_lag == sorted(seen_lag, reverse=True)  # it shrinks as the consumer catches up
