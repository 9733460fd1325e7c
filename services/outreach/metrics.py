"""The outreach counters: deliveries and runs by outcome (the gauges of what is left are in
backlog.py). The run executor, the senders' results and the send-result polling all count here."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from shared.vocabulary import CHANNELS

DELIVERIES = Counter(
    "siyu_outreach_deliveries_total", "Deliveries by outcome", ["tenant", "channel", "status"]
)
RUNS = Counter("siyu_outreach_runs_total", "Campaign runs by outcome", ["tenant", "outcome"])


def count_from_zero(tenant_ids) -> None:
    """Create the failed and unknown delivery series at 0 (the worker calls this at start): the
    first such delivery of a process's life is then an increase the alerts see, not a series
    born at 1 (docs/monitoring.md)."""
    for tenant_id in tenant_ids:
        for channel in CHANNELS:
            for status in ("sent", "failed", "unknown"):
                DELIVERIES.labels(tenant_id, channel, status)
        for status in ("sent", "already_sent", "missed", "failed", "no_content"):
            WELCOMES.labels(tenant_id, status)
        WELCOMES_LOST.labels(tenant_id)


# Welcome on add (services/outreach/welcome.py): outcomes, the add callback -> send_welcome_msg
# latency (WeCom's window is 20 s: docs/platform.md "Welcome on add") and the code's tags.
WELCOMES = Counter(
    "siyu_outreach_welcomes_total",
    "Welcomes on add by outcome (sent, already_sent, missed, failed, no_content)",
    ["tenant", "status"],
)
WELCOME_LATENCY = Histogram(
    "siyu_outreach_welcome_latency_seconds",
    "From the add callback's CreateTime to the send_welcome_msg call",
    ["tenant"],
    buckets=(0.25, 0.5, 1, 2, 3, 5, 10, 15, 20, 30),
)
WELCOME_CALLBACK_LAG = Histogram(
    "siyu_outreach_welcome_callback_lag_seconds",
    "An add's received_at - occurred_at (ingest's clock against WeCom's CreateTime: skew and lag)",
    ["tenant"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 60),
)
WELCOMES_LOST = Counter(
    "siyu_outreach_welcomes_lost_total", "Welcome claims swept as lost_after_claim", ["tenant"]
)
WELCOME_TAGS = Counter(
    "siyu_outreach_welcome_tags_total", "Channel-code tags marked on add", ["tenant", "outcome"]
)
