"""Lost customers (docs/domain.md "Lost customers"): whether a contact is lost, why, to whom and
since when, from its own events in time order (pure).

A contact is lost by the latest WeCom relation evidence being an exit: the customer deleted the
staff member (``wecom.contact.follow_user_deleted``) or the staff member deleted the customer
(``wecom.contact.deleted``). A later re-add (the same evidence that makes it reachable again,
services/segment/reach.py ``WECOM_ON``: added or half_added, never a later enrichment) clears
it. Deriving from the stored events, never from the order they arrived in, keeps it
replay-safe: a late re-add older than the loss changes nothing. The same rule drives
1:1 reach, so "lost" and "excluded from wecom_single" always agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from services.segment.facts import EventFact
from services.segment.reach import WECOM_OFF, WECOM_ON

# The reason codes of a loss, by event type.
REASONS = {
    "wecom.contact.follow_user_deleted": "customer_deleted_staff",
    "wecom.contact.deleted": "staff_deleted_customer",
}
assert set(REASONS) == WECOM_OFF


def lost_state(events: Iterable[EventFact], carried: dict[str, Any] | None = None
               ) -> dict[str, Any] | None:  # fmt: skip
    """``{"reason", "staff_userid", "at", "event_id"}`` of the loss in force after ``events``
    (oldest first), or None when the contact is not lost. ``carried`` is the loss stored before:
    the rules see a bounded window of events, and a loss whose exit has left it stays until a
    re-add (or a newer exit) in the window says otherwise."""
    lost: dict[str, Any] | None = carried
    for e in events:
        if e.type in WECOM_OFF:
            staff = e.attributes.get("staff_userid")
            lost = {
                "reason": REASONS[e.type],
                "staff_userid": staff if isinstance(staff, str) and staff else None,
                "at": e.occurred_at.isoformat(),
                "event_id": e.event_id,
            }
        elif e.type in WECOM_ON:
            lost = None
    return lost


def members_lost(losses: Mapping[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    """The lost members of an account, ``{contact_id: lost_state}``, newest loss first."""
    found = [{"contact_id": c, **s} for c, s in losses.items() if s is not None]
    return sorted(found, key=lambda m: (m["at"], m["contact_id"]), reverse=True)
