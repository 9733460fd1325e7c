"""A consumer process for the SIGTERM test: python -m tests.integration.shared.kafka.consumer_process ..."""

from __future__ import annotations

import sys

from shared.envelope import decode_touchpoint
from shared.kafka.consumer import ConsumerRunner, DeadLetterQueue, create_consumer
from shared.kafka.producer import create_producer
from shared.kafka.settings import KafkaSettings
from shared.kafka.tansu import GROUP_TIMINGS
from shared.kafka.topics import TOUCHPOINTS, TOUCHPOINTS_DLQ
from tests.integration.shared.kafka.test_kafka import Effects


def main(bootstrap: str, prefix: str, group: str, dsn: str, schema: str) -> int:
    kafka = KafkaSettings(bootstrap=bootstrap, topic_prefix=prefix, **GROUP_TIMINGS)
    effects = Effects(dsn, schema)
    producer = create_producer(kafka, client_id="sigterm-test")
    runner = ConsumerRunner(
        create_consumer(kafka, group_id=group, client_id="sigterm-test"),
        topics=[kafka.topic(TOUCHPOINTS)],
        group=group,
        decode=lambda m: decode_touchpoint(m.value),
        process=effects.process,
        dlq=DeadLetterQueue(producer, kafka.topic(TOUCHPOINTS_DLQ), group=group),
        commit_interval_s=60,  # only the shutdown commit can save the offsets in this test
    )
    runner.install_signal_handlers()
    runner.run()
    producer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
