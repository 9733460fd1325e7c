"""Source channels (docs/domain.md "Channel codes"): the FIRST and LATEST channel a contact came
through, from its own events in event time (pure).

Evidence is the ``state`` of a channel code (shared/source_channels.py ``channel_of``): on an
add (``wecom.contact.added`` / ``half_added``, attributes.state from the callback) at the
event's time, and on an enrichment (``wecom.contact.enriched``: each follow user's state at its
``createtime``), which also covers an add whose callback was lost, and on a group join through a
join code (``wecom.chat.member_enriched``: the member's state at its ``join_time``; WeCom gives
it only in ``groupchat/get``, services/segment/enrichment.py). The earliest evidence is the
first channel, the newest the latest; ties go to the smaller channel name, so the answer never
depends on the order events arrived in. The stored values are carried (the rules see a bounded
window of events, and a first channel older than the window must stay), and merged the same way,
so a replay or a recompute derives the same ("Event time and replay").
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from services.segment.facts import EventFact
from shared.source_channels import channel_of

ADDS = ("wecom.contact.added", "wecom.contact.half_added")
ENRICHED = "wecom.contact.enriched"
MEMBER_ENRICHED = "wecom.chat.member_enriched"
FIELDS = ("first_channel", "first_channel_at", "latest_channel", "latest_channel_at")

Sources = dict[str, Any]  # FIELDS; datetimes, or None when no channel is known


def evidence(event: EventFact) -> list[tuple[datetime, str]]:
    """(when, channel) of each channel code the event shows a contact came through."""
    if event.type in ADDS:
        channel = channel_of(event.attributes.get("state"))
        return [(event.occurred_at, channel)] if channel else []
    if event.type == ENRICHED:
        found = []
        for f in event.attributes.get("follow_users") or []:
            channel = channel_of(f.get("state")) if isinstance(f, dict) else None
            created = f.get("createtime") if channel else None
            if isinstance(created, int | float) and not isinstance(created, bool):
                found.append((datetime.fromtimestamp(created, UTC), channel))
        return found
    if event.type == MEMBER_ENRICHED:
        channel = channel_of(event.attributes.get("state"))
        joined = event.attributes.get("join_time")
        if channel and isinstance(joined, int | float) and not isinstance(joined, bool):
            return [(datetime.fromtimestamp(joined, UTC), channel)]
        return []
    return []


def _merge(points: Iterable[tuple[datetime, str]]) -> Sources:
    ordered = sorted(points)
    if not ordered:
        return dict.fromkeys(FIELDS)
    (first_at, first), latest_at = ordered[0], ordered[-1][0]
    latest = min(c for at, c in ordered if at == latest_at)
    return {"first_channel": first, "first_channel_at": first_at,
            "latest_channel": latest, "latest_channel_at": latest_at}  # fmt: skip


def _carried(carried: dict[str, Any] | None) -> list[tuple[datetime, str]]:
    points = []
    for name in ("first_channel", "latest_channel"):
        at = (carried or {}).get(f"{name}_at")
        if (carried or {}).get(name) and at is not None:
            points.append((at, carried[name]))
    return points


def contact_sources(events: Iterable[EventFact], carried: dict[str, Any] | None = None) -> Sources:
    """The contact's first and latest source channel after ``events`` and what was stored."""
    return _merge([p for e in events for p in evidence(e)] + _carried(carried))


def account_sources(members: Iterable[Sources]) -> Sources:
    """An account's first and latest source channel: the earliest and newest of its members'."""
    return _merge(p for m in members for p in _carried(m))
