"""The embedded broker's deviations from Apache Kafka, one test each, and the workaround in
shared/kafka/tansu.py shown to be right.

On the embedded broker (Tansu) each test shows the deviation; with SIYU_TEST_KAFKA_BOOTSTRAP
naming an Apache Kafka it asserts Apache's behaviour instead. The persistence test starts an
embedded broker of its own (a shared cluster cannot be stopped): it is about Tansu only.
"""

from __future__ import annotations

import statistics
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from shared.devstack.broker import EmbeddedBroker
from shared.devstack.ports import free_port
from shared.kafka import tansu
from shared.kafka.settings import KafkaSettings
from shared.kafka.topics import TOUCHPOINTS
from tests.kafka_helpers import read_topic


def one_partition_topic(bootstrap: str, name: str, records: int) -> TopicPartition:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="tansu-test")
    try:
        admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in range(records):
        producer.send(name, b"record %d" % i, partition=0)
    producer.flush()
    producer.close()
    return TopicPartition(name, 0)


def test_list_offsets_end_offset(stack, unique):
    """Tansu answers ListOffsets(latest) with 1 for a partition of 5 records; Apache: 5. The end
    offset the consumer's lag uses comes from fetches, right on both."""
    tp = one_partition_topic(stack.bootstrap, f"t{unique}.offsets", 5)
    consumer = KafkaConsumer(bootstrap_servers=stack.bootstrap, enable_auto_commit=False)
    try:
        listed = consumer.end_offsets([tp])[tp]
        assert listed == (1 if stack.embedded_broker else 5)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        fetched = 0
        deadline = time.monotonic() + 10
        while fetched < 5 and time.monotonic() < deadline:
            fetched += sum(len(b) for b in consumer.poll(timeout_ms=200).values())
        assert fetched == 5
        assert tansu.end_offset(consumer, tp) == 5  # the workaround
    finally:
        consumer.close()


def join_seconds(bootstrap: str, topic: str, group: str, **timings) -> float:
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, **timings
    )
    try:
        started = time.monotonic()
        while not consumer.assignment():
            consumer.poll(timeout_ms=100)
            assert time.monotonic() - started < 60, "never joined"
        return time.monotonic() - started
    finally:
        consumer.close()


def test_group_join_time_follows_the_session_timeout(stack, unique):
    """Tansu completes a join after about half the session timeout (16 s: ~8 s); Apache after
    group.initial.rebalance.delay.ms (3 s by default), whatever the session timeout. With the
    workaround's timings it is quick on both."""
    tp = one_partition_topic(stack.bootstrap, f"t{unique}.groups", 1)
    slow = join_seconds(stack.bootstrap, tp.topic, f"g-slow-{unique}",
                        session_timeout_ms=16000, heartbeat_interval_ms=3000)  # fmt: skip
    if stack.embedded_broker:
        assert slow >= 6.0
    else:
        assert slow < 6.0
    fast = join_seconds(stack.bootstrap, tp.topic, f"g-fast-{unique}", **tansu.GROUP_TIMINGS)
    # Relative, not a wall-clock bound: a loaded machine slows both joins alike.
    assert fast < slow if stack.embedded_broker else fast < 6.0


def test_the_embedded_broker_loses_everything_when_it_stops(tmp_path, unique):
    """About Tansu only (memory storage): a stopped broker comes back without topics or messages;
    Apache Kafka keeps them on disk. after_restart() creates the topics again."""
    broker = EmbeddedBroker(tmp_path / "own-broker", port=free_port()).start()
    kafka = KafkaSettings(bootstrap=broker.bootstrap, topic_prefix=f"p{unique}.", partitions=1)
    try:
        assert kafka.topic(TOUCHPOINTS) in tansu.after_restart(kafka)
        tp = TopicPartition(kafka.topic(TOUCHPOINTS), 0)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        producer.send(tp.topic, b"unconsumed", partition=0).get(timeout=10)
        producer.close()
        assert len(read_topic(kafka, tp.topic, 1)) == 1

        broker.stop()
        broker.start()
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, client_id="tansu-test")
        try:
            assert tp.topic not in admin.list_topics()  # Apache Kafka: still there, with its log
        finally:
            admin.close()
        assert kafka.topic(TOUCHPOINTS) in tansu.after_restart(kafka)
        assert read_topic(kafka, tp.topic, 0, timeout=1) == []  # the message is gone
        assert tansu.after_restart(kafka) == []  # nothing lost since: nothing to create
    finally:
        broker.stop()


def _delivery_ms(bootstrap: str, topic: str, group: str, wait_ms: int) -> float:
    """Median ms from a record's acknowledged send to a polling consumer seeing it."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                             auto_offset_reset="earliest", fetch_max_wait_ms=wait_ms,
                             **tansu.GROUP_TIMINGS)  # fmt: skip
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    seen: dict[bytes, float] = {}

    def poll_until(key: bytes) -> None:
        deadline = time.monotonic() + 30
        while key not in seen:
            for records in consumer.poll(timeout_ms=50).values():
                for r in records:
                    seen[r.value] = time.perf_counter()
            assert time.monotonic() < deadline, "never delivered"

    try:
        warm = f"{group}-warm".encode()
        producer.send(topic, warm, partition=0).get(timeout=10)
        poll_until(warm)
        delays = []
        for i in range(15):
            for records in consumer.poll(timeout_ms=37 * (i % 5)).values():  # between fetches
                for r in records:
                    seen[r.value] = time.perf_counter()
            key = f"{group}-{i}".encode()
            sent = time.perf_counter()
            producer.send(topic, key, partition=0).get(timeout=10)
            poll_until(key)
            delays.append((seen[key] - sent) * 1000)
        return statistics.median(delays)
    finally:
        producer.close()
        consumer.close()


def test_a_fetch_is_held_for_its_whole_wait(stack, unique):
    """Tansu answers a fetch only when fetch.max.wait.ms is up, even if a record arrived
    meanwhile; Apache Kafka answers at once. With the workaround's wait a record is seen soon on
    both."""
    tp = one_partition_topic(stack.bootstrap, f"t{unique}.fetch", 1)
    held = _delivery_ms(stack.bootstrap, tp.topic, f"g-held-{unique}", 500)
    short = _delivery_ms(stack.bootstrap, tp.topic, f"g-short-{unique}",
                         tansu.FETCH_TIMINGS["fetch_max_wait_ms"])  # fmt: skip
    # Relative, not a wall-clock bound: a loaded machine slows both alike.
    if stack.embedded_broker:
        assert held > 3 * short
    else:
        assert held < 3 * short + 50
