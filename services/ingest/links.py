"""Tracked links: signed tokens naming tenant, recipient, content and campaign; a click is a
touchpoint (``link.clicked``), then a redirect. A tampered or unknown token is a 404 with no event.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeSerializer

from shared.envelope import IDENTITY_KEYS, Identity, Touchpoint, make_event_id

SALT = "siyu.link.v1"


class LinkSigner:
    """One secret for the deployment; the tenant id is inside the signed payload."""

    def __init__(self, secret: str):
        if len(secret) < 16:
            raise ValueError("the link secret must be at least 16 characters")
        self._serializer = URLSafeSerializer(secret, salt=SALT)

    def sign(
        self,
        *,
        tenant_id: str,
        url: str,
        identity_kind: str,
        identity_value: str,
        content_id: str | None = None,
        campaign_id: str | None = None,
        contact_id: str | None = None,
    ) -> str:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("tracked links must point at http(s) URLs")
        if identity_kind not in IDENTITY_KEYS:
            raise ValueError(f"unknown identity kind {identity_kind!r}")
        payload = {"t": tenant_id, "u": url, "k": identity_kind, "v": identity_value}
        for short, value in (("i", content_id), ("m", campaign_id), ("c", contact_id)):
            if value is not None:
                payload[short] = value
        return self._serializer.dumps(payload)

    def load(self, token: str) -> dict | None:
        """The payload of a genuine token, or None (tampered, truncated, foreign)."""
        if len(token) > 2048:
            return None
        try:
            payload = self._serializer.loads(token)
        except BadSignature:
            return None
        if not isinstance(payload, dict) or not {"t", "u", "k", "v"} <= payload.keys():
            return None
        return payload


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
