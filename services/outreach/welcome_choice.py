"""Which welcome a new contact gets (pure; docs/domain.md "Welcome on add").

The candidates are the channel code's ``welcome_content`` in its order (or the tenant's
``default_welcome`` when the add's state is no code of ours). An archived item, or a promotional
one the no-discount guard refuses for this contact (services/outreach/policies.py, the same guard
campaigns use), is passed over. Among the rest, an item whose stages or roles target the contact
wins over the code's general items; otherwise the first general item that fits is sent. A contact
outreach does not know yet (no profile) has no stage or role: only general items fit it, and in a
B2B tenant no promotion (it may be comparing offers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.outreach.policies import Item, Policy, Recipient, promotion_refused


@dataclass(frozen=True)
class Choice:
    content_id: str | None
    reason: str | None  # why nothing is sent (None when content_id is set)


def targeted(item: Item) -> bool:
    return bool(item.stages or item.roles)


def choose(items: Sequence[Item], r: Recipient, policy: Policy, *, known: bool = True) -> Choice:
    """``known``: outreach's audience has the contact. An unknown B2B contact's stage is not
    known, so it may be comparing: it gets no promotion (``no_discount_unknown_contact``)."""
    if not items:
        return Choice(None, "no_welcome_content")
    refused = None
    fitting = []
    for item in items:
        if not item.fits(r):
            continue
        why = None
        if item.promotional:
            unknown_b2b = not known and r.mode == "b2b"
            why = "no_discount_unknown_contact" if unknown_b2b else promotion_refused(r, policy)
        if why is not None:
            refused = refused or why
            continue
        fitting.append(item)
    best = next((i for i in fitting if targeted(i)), None) or next(
        (i for i in fitting if not targeted(i)), None
    )
    if best is not None:
        return Choice(best.content_id, None)
    return Choice(None, refused or "no_fitting_content")
