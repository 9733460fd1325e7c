"""Dead letters per consumer group, and the limit past which a consumer stops (issue 13, item 7).

Through the real broker: outreach's poison messages land in outreach's DLQ, not the touchpoints
one; a run of invalid messages past the limit stops the runner with the run left uncommitted, so
that a fixed deploy consumes it again; `siyu segment consume` exits non-zero saying why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from services.outreach.worker import build_runner as outreach_runner
from shared.config import Settings
from shared.db import create_pool
from shared.envelope import decode_touchpoint
from shared.kafka.consumer import ConsumerRunner, DeadLetterQueue, create_consumer
from shared.kafka.dlq_limit import DlqLimit, DlqLimitExceeded
from shared.kafka.producer import Record, create_producer, publish
from shared.kafka.tansu import DEV_TIMINGS_ENV
from shared.kafka.topics import OUTREACH_DLQ, PROFILES, TOUCHPOINTS, TOUCHPOINTS_DLQ, ensure_topics
from shared.migrations import migrate_service
from shared.tenants import DEMO_TENANTS_PATH
from tests.integration.shared.kafka.test_kafka import Effects, touchpoint
from tests.kafka_helpers import RunnerThread, read_topic, wait_until

SIYU = str(Path(sys.executable).with_name("siyu"))
KEY = "acme:one-partition"  # every record of a test on one partition: offsets in order


@pytest.fixture
def producer(kafka):
    ensure_topics(kafka)
    p = create_producer(kafka, client_id="test-dlq")
    yield p
    p.close()


def test_outreach_dead_letters_go_to_its_own_dlq(stack, kafka, producer, schema):
    migrate_service(stack.dsn, "outreach", schema=schema)
    pool = create_pool(stack.dsn, name="dlq-test", schema=schema, max_size=2)
    settings = Settings(stack.dsn, kafka, DEMO_TENANTS_PATH)
    runner = outreach_runner(settings, pool, group="siyu-outreach")
    try:
        publish(producer, [Record(kafka.topic(PROFILES), KEY, b"{not json")])
        with RunnerThread(runner):
            (dead,) = read_topic(kafka, kafka.topic(OUTREACH_DLQ), 1)
        body = json.loads(dead.value)
        assert body["group"] == "siyu-outreach"
        assert body["source"]["topic"] == kafka.topic(PROFILES)
        assert read_topic(kafka, kafka.topic(TOUCHPOINTS_DLQ), 0, timeout=1) == []
    finally:
        pool.close()


def limited_runner(kafka, effects, producer, group, limit: DlqLimit, decode=None):
    consumer = create_consumer(kafka, group_id=group, client_id="test-dlq")
    return ConsumerRunner(
        consumer,
        topics=[kafka.topic(TOUCHPOINTS)],
        group=group,
        decode=decode or (lambda m: decode_touchpoint(m.value)),
        process=effects.process,
        dlq=DeadLetterQueue(producer, kafka.topic(TOUCHPOINTS_DLQ), group=group),
        dlq_limit=limit,
        commit_interval_s=0.0,
        max_batch=2,  # the run spans batches, and commits happen between them
    )


def committed(kafka, group: str) -> dict[int, int]:
    probe = KafkaConsumer(bootstrap_servers=kafka.bootstrap, group_id=kafka.group(group))
    try:
        topic = kafka.topic(TOUCHPOINTS)
        parts = probe.partitions_for_topic(topic) or set()
        found = {p: probe.committed(TopicPartition(topic, p)) for p in parts}
        return {p: o for p, o in found.items() if o is not None}
    finally:
        probe.close()


def test_a_run_of_invalid_messages_past_the_limit_stops_the_consumer_uncommitted(
    stack, kafka, producer, schema, unique
):
    """2 valid, 6 a bad deploy cannot decode, 1 valid; limit 3 in a row. The consumer dead-letters
    3, stops with the run (offsets 2..) uncommitted, though commits ran between its batches and on
    leaving the group; the fixed deploy consumes the run."""
    topic = kafka.topic(TOUCHPOINTS)
    good = [touchpoint(i) for i in range(9)]
    publish(producer, [Record(topic, KEY, tp.to_json()) for tp in good])
    effects = Effects(stack.dsn, schema)
    group = f"g-limit-{unique}"

    def bad_deploy(message):  # rejects what the previous release wrote from the third record on
        if message.offset >= 2 and message.offset < 8:
            raise ValueError("unknown envelope version")
        return decode_touchpoint(message.value)

    limit = DlqLimit(max_invalid_ratio=None, max_consecutive=3)
    runner = limited_runner(kafka, effects, producer, group, limit, bad_deploy)
    with pytest.raises(DlqLimitExceeded, match="4 invalid messages in a row"):
        runner.run()
    assert effects.count() == 2
    assert len(read_topic(kafka, kafka.topic(TOUCHPOINTS_DLQ), 3)) == 3  # not the 4th, nor more
    assert list(committed(kafka, group).values()) == [2]  # the run stays to be consumed again

    # The fix is deployed: the run and what follows it are applied, nothing skipped.
    fixed = limited_runner(kafka, effects, producer, group, limit)
    with RunnerThread(fixed):
        wait_until(lambda: effects.count() == 9, message="the run consumed again")
    assert list(committed(kafka, group).values()) == [9]


def test_the_ratio_limit_stops_the_consumer(stack, kafka, producer, schema, unique):
    topic = kafka.topic(TOUCHPOINTS)
    records = []
    for i in range(12):  # every other record is poison: never 2 in a row, half of them invalid
        value = touchpoint(i).to_json() if i % 2 == 0 else b"\xff poison"
        records.append(Record(topic, KEY, value))
    publish(producer, records)
    effects = Effects(stack.dsn, schema)
    limit = DlqLimit(max_invalid_ratio=0.4, max_consecutive=None, window=10)
    runner = limited_runner(kafka, effects, producer, f"g-ratio-{unique}", limit)
    with pytest.raises(DlqLimitExceeded, match="50% of the last 10 messages"):
        runner.run()
    # Offsets 1, 3, 5, 7 went to the DLQ; offset 9 would have made the ratio 5/10.
    assert len(read_topic(kafka, kafka.topic(TOUCHPOINTS_DLQ), 4)) == 4


@pytest.fixture
def segment_database(own_database):
    return own_database


def test_siyu_segment_consume_exits_non_zero_at_the_limit(kafka, producer, segment_database):
    topic = kafka.topic(TOUCHPOINTS)
    publish(producer, [Record(topic, KEY, b"garbage %d" % i) for i in range(5)])
    env = {
        **os.environ, **DEV_TIMINGS_ENV,
        "SIYU_DATABASE_URL": segment_database, "SIYU_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "SIYU_TOPIC_PREFIX": kafka.topic_prefix, "SIYU_WECOM_ENRICH": "0",
        "SIYU_DLQ_MAX_CONSECUTIVE": "2", "SIYU_TENANTS": str(DEMO_TENANTS_PATH),
    }  # fmt: skip
    done = subprocess.run(
        [SIYU, "segment", "consume", "--metrics-port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode != 0
    assert "3 invalid messages in a row (limit 2, SIYU_DLQ_MAX_CONSECUTIVE)" in done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    (stopped,) = [e for e in events if e.get("event") == "dlq_limit_exceeded"]
    assert stopped["group"] == "siyu-segment"
    assert stopped["level"] == "error"
    assert len(read_topic(kafka, kafka.topic(TOUCHPOINTS_DLQ), 2)) == 2


def test_dlq_settings_come_from_the_environment():
    kafka = Settings.from_env(
        {"SIYU_DLQ_MAX_RATIO": "0.25", "SIYU_DLQ_MAX_CONSECUTIVE": "0", "SIYU_DLQ_WINDOW": "50"}
    ).kafka
    assert DlqLimit.of(kafka) == DlqLimit(0.25, None, 50)
    assert DlqLimit.of(replace(kafka, dlq_max_consecutive=7)).max_consecutive == 7
    assert DlqLimit.of(Settings.from_env({}).kafka) == DlqLimit(0.5, 100, 1000)
