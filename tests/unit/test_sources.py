"""Source channels (services/segment/sources.py): the first and latest channel from channel code
states in event time, whatever order the events came in, carried past the event window."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from services.segment.facts import EventFact
from services.segment.sources import account_sources, contact_sources

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def added(days: int, state: str | None, kind: str = "wecom.contact.added") -> EventFact:
    return EventFact(kind, T0 + timedelta(days=days), {"state": state}, event_id=f"e{days}")


def enriched(days: int, *follow: tuple[int, str]) -> EventFact:
    users = [{"userid": f"u{i}", "createtime": int((T0 + timedelta(days=d)).timestamp()),
              "state": s} for i, (d, s) in enumerate(follow)]  # fmt: skip
    return EventFact("wecom.contact.enriched", T0 + timedelta(days=days),
                     {"follow_users": users})  # fmt: skip


def joined(days: int, join_day: int | None, state: str | None) -> EventFact:
    """A group join's detail (``wecom.chat.member_enriched``), fetched on ``days``."""
    at = None if join_day is None else int((T0 + timedelta(days=join_day)).timestamp())
    return EventFact("wecom.chat.member_enriched", T0 + timedelta(days=days),
                     {"chat_id": "wrC", "state": state, "join_time": at, "join_scene": 3})  # fmt: skip


@pytest.mark.parametrize(
    ("events", "first", "latest"),
    [
        ([], None, None),
        ([added(1, None), added(2, "from-wecom-admin")], None, None),  # not ours
        ([added(1, "expo.abcdefghij")], "expo", "expo"),
        ([added(1, "expo.abcdefghij"), added(5, "ad.abcdefghij")], "expo", "ad"),
        ([added(1, "expo.abcdefghij", "wecom.contact.half_added")], "expo", "expo"),
        ([added(3, "ad.abcdefghij"), enriched(4, (1, "website.abcdefghij"))], "website", "ad"),
        ([added(2, "tv.abcdefghij")], None, None),  # a channel Siyu does not have
        # A group join through a join code counts at its join time, not when it was fetched.
        ([joined(9, 1, "expo.abcdefghij"), added(5, "ad.abcdefghij")], "expo", "ad"),
        ([added(5, "ad.abcdefghij"), joined(6, 7, "store.abcdefghij")], "ad", "store"),
        ([joined(9, None, "expo.abcdefghij")], None, None),  # no join time: no evidence
        ([joined(9, 1, "from-wecom-admin")], None, None),  # not ours
    ],
)
def test_first_and_latest(events, first, latest):
    sources = contact_sources(events)
    assert (sources["first_channel"], sources["latest_channel"]) == (first, latest)


def test_the_order_events_arrive_in_does_not_matter():
    events = [added(d, s) for d, s in ((1, "expo.aaaaaaaaaa"), (4, "ad.aaaaaaaaaa"),
                                      (9, "store.aaaaaaaaaa"), (9, "article.aaaaaaaaa0"))]  # fmt: skip
    expected = contact_sources(events)
    assert (expected["first_channel"], expected["latest_channel"]) == ("expo", "article")
    for seed in range(5):
        shuffled = events[:]
        random.Random(seed).shuffle(shuffled)
        assert contact_sources(shuffled) == expected


def test_the_stored_channels_carry_past_the_window():
    stored = contact_sources([added(1, "expo.abcdefghij")])
    later = contact_sources([added(300, "ad.abcdefghij")], stored)
    assert (later["first_channel"], later["latest_channel"]) == ("expo", "ad")
    # A replay of the same events onto the stored state derives the same.
    assert contact_sources([added(300, "ad.abcdefghij")], later) == later


def test_an_account_takes_its_members_earliest_and_newest():
    members = [contact_sources([added(5, "ad.abcdefghij")]),
               contact_sources([added(2, "expo.abcdefghij"), added(3, "event.abcdefghij")]),
               contact_sources([])]  # fmt: skip
    sources = account_sources(members)
    assert (sources["first_channel"], sources["latest_channel"]) == ("expo", "ad")
