"""Tracked-link tokens (``GET /r/<token>`` on ingest): outreach seals them into the content it
sends, ingest opens them, records the click and redirects (docs/security.md "Tracked links").

A token is ``2.<tenant>.<key version>.<sealed>``: the tenant id and key version in clear (ingest
needs them to pick the key), everything else (URL, recipient identity, content, campaign,
contact, when the link was issued) sealed with AES-256-GCM, which both hides it and
authenticates it together with the clear header. The issue time (``a``, seconds since the
epoch) lets segment drop a click on a link issued before its recipient was erased, so an old
link cannot bring an erased person back (docs/privacy.md). Each tenant's key is derived from
the deployment secret (``SIYU_LINK_SECRET``) with HKDF-SHA256 over the tenant id and key
version, so the services share no key store, one tenant's key opens nothing of another's, and
raising a tenant's ``links.key_version`` in the tenants file rotates it; the previous version
still opens until ``previous_valid_until``. Tokens of the old format (one HMAC-SHA1 key for the
deployment, readable payload) are refused.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.envelope import IDENTITY_KEYS
from shared.tenants import LinkKeys, TenantRegistry

FORMAT = "2"
MAX_TOKEN = 4096  # a URL of MAX_URL and the ids, sealed and base64-encoded, fit
MAX_URL = 2000
_HEADER = re.compile(r"^2\.([a-z0-9-]{2,40})\.([0-9]{1,7})\.([A-Za-z0-9_-]+)$")
_NONCE = 12


class BadLink(ValueError):
    """A URL that cannot be tracked (not http(s), no host, too long): the content is bad."""


def url_error(url: Any) -> str | None:
    """Why ``url`` is not an http(s) URL with a host that a message may carry, or None."""
    if not isinstance(url, str) or not url:
        return "must be an http(s) URL"
    if len(url) > MAX_URL:
        return f"must be at most {MAX_URL} characters"
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "is not a valid URL"
    if parts.scheme.lower() not in ("http", "https"):
        return f"must be an http(s) URL, not {parts.scheme or 'a relative one'}:"[:80]
    if not host:
        return "must name a host (http(s)://host/...)"
    return None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkSigner:
    """Seals and opens tracked-link tokens with per-tenant keys (see the module docstring)."""

    def __init__(
        self,
        secret: str,
        tenants: TenantRegistry | Callable[[str], LinkKeys | None],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        if len(secret) < 16:
            raise ValueError("the link secret must be at least 16 characters")
        self._secret = secret.encode()
        if isinstance(tenants, TenantRegistry):
            registry = tenants

            def keys(tenant_id: str) -> LinkKeys | None:
                tenant = registry.get(tenant_id)
                return tenant.links if tenant is not None else None

            self._keys = keys
        else:
            self._keys = tenants
        self._clock = clock
        self._cache: dict[tuple[str, int], AESGCM] = {}

    def _aead(self, tenant_id: str, version: int) -> AESGCM:
        found = self._cache.get((tenant_id, version))
        if found is None:
            key = HKDF(
                algorithm=hashes.SHA256(),
                length=32,
                salt=b"siyu.link.v2",
                info=f"{tenant_id}|{version}".encode(),
            ).derive(self._secret)
            found = self._cache[(tenant_id, version)] = AESGCM(key)
        return found

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
        """The token of one link; BadLink for a URL no message may carry."""
        if (why := url_error(url)) is not None:
            raise BadLink(f"link URL {why}")
        if identity_kind not in IDENTITY_KEYS:
            raise ValueError(f"unknown identity kind {identity_kind!r}")
        keys = self._keys(tenant_id)
        if keys is None:
            raise ValueError(f"unknown tenant {tenant_id!r}")
        issued = int(self._clock().timestamp())
        payload = {"u": url, "k": identity_kind, "v": identity_value, "a": issued}
        for short, value in (("i", content_id), ("m", campaign_id), ("c", contact_id)):
            if value is not None:
                payload[short] = value
        header = f"{FORMAT}.{tenant_id}.{keys.key_version}"
        nonce = os.urandom(_NONCE)
        plain = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        sealed = self._aead(tenant_id, keys.key_version).encrypt(nonce, plain, header.encode())
        token = f"{header}.{_b64(nonce + sealed)}"
        if len(token) > MAX_TOKEN:
            raise BadLink("link is too long to track")
        return token

    def load(self, token: str) -> dict | None:
        """The payload of a genuine token of a known tenant under a key version it accepts,
        pointing at an http(s) URL, with the tenant as ``t``; else None (tampered, truncated,
        forged, another tenant's key, a retired key, the old format)."""
        if len(token) > MAX_TOKEN or (match := _HEADER.match(token)) is None:
            return None
        tenant_id, version, body = match.group(1), int(match.group(2)), match.group(3)
        keys = self._keys(tenant_id)
        if keys is None or not self._accepts(keys, version):
            return None
        try:
            data = _unb64(body)
            plain = self._aead(tenant_id, version).decrypt(
                data[:_NONCE], data[_NONCE:], token[: match.start(3) - 1].encode()
            )
            payload = json.loads(plain)
        except (ValueError, InvalidTag):
            return None
        if not isinstance(payload, dict) or not {"u", "k", "v"} <= payload.keys():
            return None
        if payload["k"] not in IDENTITY_KEYS or url_error(payload["u"]) is not None:
            return None
        if "a" in payload and (type(payload["a"]) is not int or payload["a"] < 0):
            return None
        return {**payload, "t": tenant_id}

    def _accepts(self, keys: LinkKeys, version: int) -> bool:
        if version == keys.key_version:
            return True
        grace = keys.previous_valid_until
        return version == keys.key_version - 1 and grace is not None and self._clock() < grace
