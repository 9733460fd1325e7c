"""Reach per channel from a contact's own events: the latest evidence wins."""

from datetime import UTC, datetime, timedelta

import pytest

from services.segment.facts import EventFact
from services.segment.reach import reach

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)


def events(*types: str) -> list[EventFact]:
    return [EventFact(t, T0 + timedelta(hours=i)) for i, t in enumerate(types)]


@pytest.mark.parametrize(
    ("types", "follower", "contact"),
    [
        ((), None, None),
        (("biz.order.paid",), None, None),
        (("oa.subscribe",), True, None),
        (("oa.subscribe", "oa.unsubscribe"), False, None),
        (("oa.subscribe", "oa.unsubscribe", "oa.subscribe"), True, None),
        (("oa.click",), True, None),  # only followers click menus
        (("oa.template_send_finished",), None, None),  # a delivery report is no evidence
        (("oa.unsubscribe", "oa.click"), False, None),
        (("wecom.contact.added",), None, True),
        (("wecom.contact.added", "wecom.contact.follow_user_deleted"), None, False),
        (("wecom.contact.added", "wecom.contact.deleted"), None, False),
        (("wecom.contact.deleted", "wecom.contact.added"), None, True),
        (("wecom.contact.enriched",), None, True),
        (("oa.subscribe", "wecom.contact.added", "oa.unsubscribe"), False, True),
    ],
    ids=lambda value: " then ".join(value) or "no events" if isinstance(value, tuple) else None,
)
def test_reach_per_channel(types, follower, contact):
    got = reach(events(*types))
    assert (got["oa_follower"], got["wecom_contact"]) == (follower, contact)


def test_last_message_opens_the_customer_service_window():
    got = reach(events("oa.message", "oa.click", "oa.message", "oa.view"))
    assert got["oa_last_message_at"] == (T0 + timedelta(hours=2)).isoformat()
    assert reach(events("oa.click"))["oa_last_message_at"] is None
