"""Prometheus metrics shared by every process. Service-specific metrics live beside their service.

Labels carry tenant ids where a metric is per tenant; never event ids (unbounded cardinality).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

KAFKA_PRODUCED = Counter(
    "siyu_kafka_produced_total",
    "Records acknowledged (or refused) by the broker",
    ["topic", "outcome"],
)
CONSUMED = Counter(
    "siyu_consumer_messages_total",
    "Messages handled by a consumer runner, by outcome (processed, dead_lettered)",
    ["group", "topic", "outcome"],
)
CONSUMER_LAG = Gauge(
    "siyu_consumer_lag",
    "Messages behind the partition's high watermark",
    ["group", "topic", "partition"],
)
CONSUMER_BATCH_SECONDS = Histogram(
    "siyu_consumer_batch_seconds", "Time to apply one batch, commit excluded", ["group"]
)
CONSUMER_RETRIES = Counter(
    "siyu_consumer_retries_total", "Batches retried after a transient error", ["group"]
)
COMMITS = Counter("siyu_consumer_commits_total", "Offset commits", ["group", "outcome"])
