"""Console passwords, hashed with scrypt (docs/console.md "Users"): stored as
``scrypt$n$r$p$salt$hash`` (salt and hash in base64), so that stronger parameters can be chosen
later without losing the users hashed with the old ones."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

N, R, P = 2**14, 8, 1
SALT_BYTES = 16
KEY_BYTES = 32
MIN_LENGTH = 10
MAX_LENGTH = 1024  # scrypt reads every byte: a megabyte "password" is work, not a secret
# A hash verified when no user matched, so that an unknown login costs as long as a wrong
# password (docs/console.md "Lockout": the same answer, in the same time).
_DUMMY = None


class WeakPassword(ValueError):
    """A password the console does not accept (too short or too long)."""


def check_password(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"at most {MAX_LENGTH} characters")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=2 * 128 * n * r * p + 2**20,
        dklen=KEY_BYTES,
    )  # fmt: skip


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    key = _derive(password, salt, N, R, P)
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str | None) -> bool:
    """True when ``password`` matches ``stored``; ``stored`` None (no such user) costs one hash
    all the same and is False. A malformed stored hash is False, never an error."""
    global _DUMMY
    if stored is None:
        if _DUMMY is None:
            _DUMMY = hash_password("not-a-password")
        verify_password(password, _DUMMY)
        return False
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(key, validate=True)
        got = _derive(password[:MAX_LENGTH], base64.b64decode(salt, validate=True),
                      int(n), int(r), int(p))  # fmt: skip
    except ValueError:
        return False
    return hmac.compare_digest(got, expected)
