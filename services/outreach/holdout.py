"""A campaign's holdout (docs/domain.md "Effect report"): a deterministic share of its contacts
that it never sends to, the control group the effect report measures the campaign against.

Whether a contact is held out is a keyed hash of (tenant, campaign, contact) compared with the
campaign's percentage, so the same contact is held out of the same campaign in every run, on
every replica and in every replay, and raising the share only adds contacts to the holdout (one
held out at 10 % stays held out at 20 %). Only contacts whose send was decided (every rule let
it through) are held out: the control group is "would have received it". Customer groups and OA
tags are not people: holdouts apply to contact-addressed channels only (model.py refuses a
holdout on ``wecom_group`` and on an OA tag audience).
"""

from __future__ import annotations

import hashlib

MAX_PERCENT = 50
REASON = "held_out"  # a held-out contact's delivery row: status excluded, this reason
_KEY = b"siyu.holdout.v1"  # the hash's key: another use of the same ids draws differently
_SCALE = 2**64


def draw(tenant_id: str, campaign_id: str, contact_id: str) -> float:
    """The contact's place in [0, 1) for this campaign: uniform, stable, independent per
    campaign (so one campaign's holdout is not every campaign's)."""
    data = "\x1f".join((tenant_id, campaign_id, contact_id)).encode()
    digest = hashlib.blake2b(data, key=_KEY, digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def held_out(tenant_id: str, campaign_id: str, contact_id: str, percent: int | None) -> bool:
    """Whether the contact is in the campaign's holdout of ``percent`` (0: none)."""
    if not percent:
        return False
    return draw(tenant_id, campaign_id, contact_id) < percent / 100
