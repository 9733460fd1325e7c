"""Signed tracked-link tokens (``GET /r/<token>`` on ingest): outreach signs them into the
content it sends, ingest verifies them and records the click. One secret per deployment
(``SIYU_LINK_SECRET``); the tenant id is inside the signed payload.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeSerializer

from shared.envelope import IDENTITY_KEYS

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
