"""A value the console must carry from one request to the next in its session cookie without
the browser being able to read it: a new API token's secret between the POST that made it and
the page that shows it once (docs/console.md "API tokens"). Flask's session cookie is signed,
not encrypted, so the value is sealed with Fernet (AES-CBC + HMAC, with its time) under a key
derived from the console's secret, and opened only within a short time."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken

# The session key of a new token's sealed secret (console/views_settings.py); a name, not a secret.
NEW_TOKEN = "new_token"  # noqa: S105
# Long enough for the redirect after the POST; a sealed value older than this is not shown.
TTL_S = 120


def _fernet(secret: str) -> Fernet:
    digest = hashlib.sha256(b"siyu-console-sealed\x00" + secret.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal(value: str, secret: str) -> str:
    return _fernet(secret).encrypt(value.encode()).decode()


def unseal(sealed: str, secret: str, ttl_s: int = TTL_S) -> str | None:
    """The value, or None once it is older than ``ttl_s`` or was not sealed with ``secret``."""
    try:
        return _fernet(secret).decrypt(sealed.encode(), ttl=ttl_s).decode()
    except (InvalidToken, ValueError):
        return None
