"""Whether a contact can be reached, per channel, from its own events (pure).

Outreach keeps no events: the profile tells it who still follows the Official Account, who is
still a WeCom contact of the company, and when the contact last wrote to the OA (a message opens
the 48-hour customer-service window, docs/platform.md). ``None`` means no evidence either way.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from services.segment.facts import EventFact

OA_ON = frozenset({"oa.subscribe"})
OA_OFF = frozenset({"oa.unsubscribe"})
# Only an add makes a contact again: enrichment also follows a staff member's remark or tag edit
# and delayed retries, so landing after an exit it must not undo the loss (it can only tell a
# contact with no relation evidence yet that it is one).
WECOM_ON = frozenset({"wecom.contact.added", "wecom.contact.half_added"})
WECOM_SEEN = frozenset({"wecom.contact.enriched"})
WECOM_OFF = frozenset({"wecom.contact.deleted", "wecom.contact.follow_user_deleted"})
OA_INBOUND = frozenset({"oa.message"})
OA_INTERACTIONS = frozenset({"oa.scan", "oa.click", "oa.view", "oa.location", "oa.message"})


def reach(events: Iterable[EventFact], lost: dict | None = None) -> dict[str, bool | str | None]:
    """``oa_follower``, ``wecom_contact`` (the latest on/off evidence wins; any other OA event
    means a follower) and ``oa_last_message_at`` (ISO time), from events in time order. ``lost``
    is the loss in force (services/segment/lost.py, carried past the event window): a lost
    contact is never reachable 1:1, whatever the window still shows."""
    follower: bool | None = None
    contact: bool | None = None
    last_message: datetime | None = None
    for e in events:
        if e.type in OA_ON:
            follower = True
        elif e.type in OA_OFF:
            follower = False
        elif e.type in OA_INTERACTIONS and follower is None:
            follower = True  # only followers can click menus or write to the OA
        if e.type in WECOM_ON:
            contact = True
        elif e.type in WECOM_OFF:
            contact = False
        elif e.type in WECOM_SEEN and contact is not False:
            contact = True
        if e.type in OA_INBOUND:
            last_message = e.occurred_at
    return {
        "oa_follower": follower,
        "wecom_contact": False if lost else contact,
        "oa_last_message_at": last_message.isoformat() if last_message else None,
    }
