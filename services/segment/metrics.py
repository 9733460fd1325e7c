"""Segment's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter

# Counted when the transitions are written (services/segment/writes.py), in the writer's
# transaction: a batch that rolls back and is retried counts its transitions again. Good enough
# for a rate; stage_history is the record. Stages are a fixed set per model: bounded labels.
STAGE_CHANGES = Counter(
    "siyu_segment_stage_changes_total",
    "Lifecycle stage transitions written, by tenant, subject kind, model and stage entered",
    ["tenant", "subject", "model", "to_stage"],
)

# A segment whose rule failed while being evaluated is disabled (services/segment/segments.py):
# alert on any increase, an operator has a rule to fix. Tenants are a bounded set.
SEGMENTS_DISABLED = Counter(
    "siyu_segment_segments_disabled_total",
    "Segments disabled because their rule failed while being evaluated, by tenant",
    ["tenant"],
)

# The time tick (services/segment/tick.py): contacts and accounts re-derived because their due
# instant passed. Tenants are a bounded set; subject is contact or account.
TICK_DERIVED = Counter(
    "siyu_segment_tick_derived_total",
    "Contacts and accounts the time tick re-derived, by tenant and subject kind",
    ["tenant", "subject"],
)
