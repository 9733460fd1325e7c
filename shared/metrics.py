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
# Every HTTP call to the WeCom/OA server APIs (shared/wechat), retries included: errcode "0" is a
# success, the platform's errcode otherwise (45009 throttling, 40001/42001 tokens), "unavailable"
# for a timeout, HTTP or transport error. api is the endpoint path (a fixed set in our code).
PLATFORM_CALLS = Counter(
    "siyu_platform_api_calls_total",
    "WeCom and OA server-API calls by tenant, platform, api and errcode",
    ["tenant", "platform", "api", "errcode"],
)
# Set by each /readyz answer (the kubelet probes every 5 s), so a scrape says whether the pod is
# ready without Prometheus calling the checks itself. The newest answer wins across gunicorn
# workers.
READY = Gauge(
    "siyu_ready",
    "1 if the last /readyz found every check passing, else 0",
    multiprocess_mode="livemostrecent",
)
# Requests answered 429 by a tenant's rate limit (shared/ratelimit.py), by surface: events (the
# business events API), links (tracked links), api (the admin API). tenant "-" is a platform
# token acting on no tenant.
RATE_LIMITED = Counter(
    "siyu_rate_limited_total",
    "Requests refused by a tenant's rate limit, by tenant and surface",
    ["tenant", "surface"],
)
