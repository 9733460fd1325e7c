"""Ingest's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "siyu_ingest_requests_total",
    "HTTP requests by tenant, route and status",
    ["tenant", "route", "status"],
)
LATENCY = Histogram(
    "siyu_ingest_request_seconds",
    "Request latency by route",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENTS = Counter(
    "siyu_ingest_events_total",
    "Touchpoints by outcome (produced, outboxed, refused, ignored)",
    ["tenant", "type", "outcome"],
)
# Every gunicorn worker counts the same table: the largest count of the live workers, not a sum,
# and a dead worker's last count is dropped (not kept forever, as the default "all" mode would).
OUTBOX_DEPTH = Gauge(
    "siyu_ingest_outbox_depth",
    "Events waiting in the outbox (ingest.outbox rows)",
    multiprocess_mode="livemax",
)
