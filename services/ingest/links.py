"""Tracked links: tokens sealed per tenant (shared/links.py) naming the recipient, content and
campaign; a click is a touchpoint (``link.clicked``), then a redirect to the http(s) URL outreach
sealed. A tampered, foreign or unknown token is a 404 with no event (docs/security.md "Tracked
links"). The click records when the link was issued (``link_issued_at``): segment drops a click
on a link issued before its recipient was erased (docs/privacy.md).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from shared.envelope import Identity, Touchpoint, make_event_id
from shared.links import LinkSigner

__all__ = ["LinkSigner", "click_touchpoint", "issued_at"]


def issued_at(payload: dict) -> str | None:
    """When the link was issued (ISO 8601, UTC); None for a token sealed before links said so."""
    seconds = payload.get("a")
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat()


def click_touchpoint(token: str, payload: dict, *, received_at: datetime, user_agent: str | None):
    # A browser that prefetches or a double tap yields the same id within the same second.
    dedup = f"{hashlib.sha256(token.encode()).hexdigest()}|{int(received_at.timestamp())}"
    tenant_id = payload["t"]
    attributes = {
        "url": payload["u"],
        "content_id": payload.get("i"),
        "campaign_id": payload.get("m"),
        "contact_id": payload.get("c"),
        "user_agent": (user_agent or "")[:300] or None,
        "link_issued_at": issued_at(payload),
    }
    return Touchpoint(
        event_id=make_event_id(tenant_id, "link", dedup),
        tenant_id=tenant_id,
        source="link",
        type="link.clicked",
        occurred_at=received_at,
        received_at=received_at,
        identity=Identity(**{payload["k"]: payload["v"]}),
        attributes={k: v for k, v in attributes.items() if v is not None},
    )
