"""Keyed hashes of personal identities, and the erasure announcement (docs/privacy.md).

An erased person's identities are remembered (so a replay cannot bring the person back), their
per-person encryption keys are found and the logs name people, all by a keyed hash: the
identity itself is not kept, and without the key a hash does not confirm a guessed identity
(a mobile number is easy to guess; HMAC makes checking a guess need the key).

The key is ``SIYU_PRIVACY_KEY`` (``Settings.privacy_key``); it must be the same in every process
of a deployment and never change (erased identities are looked up by hash). Each process installs
it at start (``install_privacy_key``, siyu/cli.py; tests/conftest.py for the tests). The processes
that handle people's data refuse to start without it (``require_privacy_key``; `siyu dev` gives
its children a development key), so no two of them can disagree on a hash. Elsewhere (a one-off
command) a fixed development key is used, with a warning.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from functools import lru_cache
from typing import Any

import structlog
from marshmallow import EXCLUDE, Schema, fields, validate

from shared.errors import ConfigError

PRIVACY_KEY_ENV = "SIYU_PRIVACY_KEY"
# `siyu dev`'s children, commands beside it, and where SIYU_PRIVACY_KEY is unset: documented.
DEV_PRIVACY_KEY = "siyu-dev-privacy-key-not-for-production"
MIN_KEY_CHARS = 16

# Identities that name a person (chat_id, staff_userid and account_key name other things).
PERSON_KINDS = ("unionid", "crm_id", "external_userid", "openid")

ERASURE = "erasure/1"


@lru_cache(maxsize=4)
def _key(raw: str) -> bytes:
    return hashlib.sha256(raw.encode("utf-8")).digest()


_warned = False
# The process's key (install_privacy_key); "" until one is installed.
_installed = ""


def install_privacy_key(key: str) -> None:
    """Make ``key`` (``Settings.privacy_key``) the one this process hashes with; "" leaves the
    development key. Forked workers (gunicorn) inherit it."""
    global _installed
    _installed = key


def privacy_key() -> bytes:
    configured = _installed
    if not configured:
        global _warned
        if not _warned:
            _warned = True  # first: the warning itself goes through the log processor's hashes
            structlog.get_logger("siyu.privacy").warning(
                "privacy_key_unset", hint=f"set {PRIVACY_KEY_ENV}; a development key is used"
            )
        configured = DEV_PRIVACY_KEY
    return _key(configured)


def require_privacy_key(key: str) -> None:
    """Refuse to start without SIYU_PRIVACY_KEY (a public key would make hashes guessable)."""
    if len(key) < MIN_KEY_CHARS:
        raise ConfigError(
            f"{PRIVACY_KEY_ENV} must be set to at least {MIN_KEY_CHARS} characters, the same in "
            "every process (keyed hashes of people's identities; docs/privacy.md)"
        )


def identity_hash(tenant_id: str, kind: str, value: str) -> str:
    """HMAC-SHA256 of tenant, kind and value (unit-separated), hex: stable across processes."""
    material = "\x1f".join((tenant_id, kind, value)).encode("utf-8")
    return hmac.new(privacy_key(), material, hashlib.sha256).hexdigest()


def pseudonym(value: str) -> str:
    """A short keyed hash for logs: the same value reads the same in every line, and no more."""
    digest = hmac.new(privacy_key(), value.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"h:{digest[:16]}"


class ErasureSchema(Schema):
    """A value of ``siyu.erasures.v1``, keyed ``<tenant_id>:<contact_id>``. It names the person
    only by the contact id and the keyed hashes of their identities: enough for every service
    to find what it holds, nothing that identifies the person to a reader of the topic."""

    class Meta:
        unknown = EXCLUDE  # consumers accept additions within the same major version

    schema = fields.String(required=True, validate=validate.Equal(ERASURE))
    tenant_id = fields.String(required=True)
    contact_id = fields.String(required=True)
    # Contacts merged into this one earlier: their ids are erased with it.
    merged = fields.List(fields.String(), load_default=list)
    identity_hashes = fields.List(fields.String(), required=True)
    erased_at = fields.AwareDateTime(required=True)


_SCHEMA = ErasureSchema()


def encode_erasure(value: dict[str, Any]) -> bytes:
    loaded = _SCHEMA.load({"schema": ERASURE, **value})
    return json.dumps(_SCHEMA.dump(loaded), ensure_ascii=False).encode()


def decode_erasure(value: bytes) -> dict[str, Any]:
    return _SCHEMA.load(json.loads(value))
