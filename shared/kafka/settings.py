"""Where the processes find Kafka and how they use it: bootstrap servers, the topic and group
prefix, partitions, consumer timings, batch size, the dead-letter limit and TLS/SASL. Read from
the environment by ``Settings.from_env`` (shared/config.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.kafka.security import KafkaSecurity


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap: str
    topic_prefix: str = ""
    partitions: int = 6
    replication: int = 1
    # Production Kafka defaults; `siyu dev` and the tests use fast group joins
    # (shared/kafka/tansu.py).
    session_timeout_ms: int = 45000
    heartbeat_interval_ms: int = 3000
    max_poll_interval_ms: int = 300000
    # How long the broker may hold a fetch when no record is there (Kafka's default; see
    # shared/kafka/tansu.py for the embedded broker's).
    fetch_max_wait_ms: int = 500
    # Records a consumer applies per transaction: larger batches amortise the per-batch reads
    # and account refreshes (bench/segment.py: 500 -> 2000 is ~1.7x the rate).
    max_batch: int = 2000
    # The dead-letter limit (shared/kafka/dlq_limit.py); None turns a check off.
    dlq_max_ratio: float | None = 0.5
    dlq_max_consecutive: int | None = 100
    dlq_window: int = 1000
    # TLS and SASL (shared/kafka/security.py): each process's own Kafka user in the cluster.
    security: KafkaSecurity = field(default_factory=KafkaSecurity)

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def group(self, name: str) -> str:
        """The prefix namespaces consumer groups too: two installations (or tests) sharing a
        cluster never join each other's groups, and never wait out each other's members."""
        return f"{self.topic_prefix}{name}"
