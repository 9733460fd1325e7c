"""Bearer tokens, roles and tenant scope of the admin API.

A token (``siyu_adm_...``) is stored as its SHA-256 in ``api_tokens`` (outreach migration
0001_admin) with a role, ``viewer`` < ``operator`` < ``admin``, and a tenant; tenant NULL is a
platform token, which acts on any tenant named by ``?tenant=ID``.

Every route declares what it needs with ``@require(role, scope=...)``:

- ``TENANT``: the route acts on one tenant, ``tenant_id()``. A tenant token always gets its own
  tenant (another ``?tenant=`` is answered 404 ``unknown_tenant``, so existence does not leak);
  a platform token must name one (400 ``tenant_required``) that exists (404 ``unknown_tenant``).
- ``TENANT_OR_ALL``: the same, except a platform token may omit ``?tenant`` (``tenant_id()`` is
  None: all tenants).
- ``PLATFORM``: platform tokens only (403 for tenant tokens).
- ``ANY``: any valid token.

Tokens are looked up by their hash, so comparing a guess never runs a byte-by-byte comparison of
the secret (no timing oracle). Every request reads the token's row (one primary-key look-up), so
a revocation or an expiry (``expires_at``, outreach migration 0007) takes effect at once in every
process, whoever wrote it (API, CLI or SQL): nothing about validity is cached, so there is no
notification to miss (docs/security.md "Tokens"). Only the ``last_used_at`` write is coalesced,
at most once per token per ``ttl_s`` and process.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass
from datetime import datetime
from functools import wraps

import psycopg
from flask import g, request
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from shared.api.errors import (
    ApiError,
    forbidden,
    unauthenticated,
    unavailable,
    unknown_tenant,
)
from shared.db import autocommit
from shared.spacing import Spacing

ROLES = ("viewer", "operator", "admin")
TOKEN_PREFIX = "siyu_adm_"  # noqa: S105 - a prefix, not a secret
TOKEN_ID_PREFIX = "tok_"  # noqa: S105
MAX_CACHE_TTL_S = 60.0
DEFAULT_CACHE_TTL_S = 30.0

TENANT = "tenant"
TENANT_OR_ALL = "tenant_or_all"
PLATFORM = "platform"
ANY = "any"
SCOPES = (TENANT, TENANT_OR_ALL, PLATFORM, ANY)

SECURITY_SCHEME = "bearerAuth"


def role_rank(role: str) -> int:
    """0 for viewer, 1 for operator, 2 for admin; ValueError for anything else."""
    try:
        return ROLES.index(role)
    except ValueError:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}") from None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh ``(token_id, token)``: the id is public, the token is shown once."""
    return TOKEN_ID_PREFIX + secrets.token_hex(6), TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's id, name, role and tenant (None: platform)."""

    token_id: str
    name: str
    role: str
    tenant_id: str | None
    expires_at: datetime | None = None

    @property
    def is_platform(self) -> bool:
        return self.tenant_id is None

    def has(self, role: str) -> bool:
        return role_rank(self.role) >= role_rank(role)


class TokenStore:
    """Principal of a token, from ``api_tokens`` (on ``pool``'s search_path), read per request.

    ``ttl_s`` (0..60 s) only spaces out the ``last_used_at`` writes of one token by this process;
    validity (revoked, expired) is never cached.
    """

    def __init__(
        self, pool: ConnectionPool, *, ttl_s: float = DEFAULT_CACHE_TTL_S, max_entries=10_000
    ):
        if not 0 <= ttl_s <= MAX_CACHE_TTL_S:
            raise ValueError(f"ttl_s must be within 0..{MAX_CACHE_TTL_S:g} seconds")
        self.pool = pool
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._touch = Spacing(ttl_s, max_entries=max_entries)  # last_used_at writes

    def authenticate(self, token: str) -> Principal | None:
        """The token's principal; None if unknown or revoked; 401 ``token_expired`` if expired."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        try:
            with autocommit(self.pool) as conn:  # one round trip per statement
                row = conn.execute(
                    "SELECT token_id, name, role, tenant_id, expires_at, "
                    "expires_at IS NOT NULL AND expires_at <= now() AS expired "
                    "FROM api_tokens WHERE token_hash = %s AND revoked_at IS NULL",
                    (hash_token(token),),
                ).fetchone()
                if row is not None and not row["expired"] and self._touch.due(row["token_id"]):
                    conn.execute(
                        "UPDATE api_tokens SET last_used_at = now() WHERE token_id = %s",
                        (row["token_id"],),
                    )
        except (psycopg.OperationalError, PoolTimeout, PoolClosed):
            raise unavailable("token store unavailable; retry later") from None
        if row is None:
            return None
        if row["expired"]:
            raise token_expired(row["expires_at"])
        return Principal(
            token_id=row["token_id"],
            name=row["name"],
            role=row["role"],
            tenant_id=row["tenant_id"],
            expires_at=row["expires_at"],
        )


def bounded_expiry(caller: Principal, wanted: datetime | None) -> datetime | None:
    """The expiry of a token ``caller`` creates: never later than the caller's own, so an
    expiring token cannot mint a longer-lived one (no expiry asked: the caller's)."""
    if caller.expires_at is None:
        return wanted
    if wanted is None:
        return caller.expires_at
    if wanted > caller.expires_at:
        raise ApiError(
            400,
            "invalid_request",
            f"expires_at: at most this token's own expiry, {caller.expires_at.isoformat()}",
            {"expires_at": [f"at most {caller.expires_at.isoformat()}"]},
        )
    return wanted


def token_expired(expires_at) -> ApiError:
    return ApiError(401, "token_expired", f"token expired at {expires_at.isoformat()}")


# --- per request -------------------------------------------------------------------------------


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def principal() -> Principal:
    """The caller of the current request (set by ``require``)."""
    found = g.get("siyu_principal")
    if found is None:
        raise RuntimeError("principal() outside a route protected by require()")
    return found


def tenant_id() -> str | None:
    """The tenant the current request acts on (see the scopes above)."""
    return g.get("siyu_tenant_id")


def authorize(role: str, scope: str) -> Principal:
    """Authenticate the request and check role and scope; idempotent within a request."""
    if g.get("siyu_authorized"):
        return g.siyu_principal
    from shared.api.context import context

    ctx = context()
    token = bearer_token()
    if token is None:
        raise unauthenticated()
    caller = ctx.tokens.authenticate(token)
    if caller is None:
        raise unauthenticated("token is unknown or revoked")
    g.siyu_principal = caller
    if not caller.has(role):
        raise forbidden(f"this needs the {role} role; the token has {caller.role}")
    if scope == PLATFORM and not caller.is_platform:
        raise forbidden("this needs a platform token")
    if scope in (TENANT, TENANT_OR_ALL):
        g.siyu_tenant_id = _resolve_tenant(ctx, caller, required=scope == TENANT)
    g.siyu_authorized = True
    return caller


def _resolve_tenant(ctx, caller: Principal, *, required: bool) -> str | None:
    asked = request.args.get("tenant") or None
    if asked is not None and "\x00" in asked:  # PostgreSQL text cannot hold it: a 500 before
        raise ApiError(400, "invalid_characters", "NUL characters (\\u0000) are not allowed")
    if caller.is_platform:
        if asked is None:
            if required:
                raise ApiError(
                    400, "tenant_required", "a platform token must name a tenant: ?tenant=ID"
                )
            return None
        wanted = asked
    else:
        if asked is not None and asked != caller.tenant_id:
            raise unknown_tenant(asked)  # 404, not 403: do not tell whether it exists
        wanted = caller.tenant_id
    with ctx.connection() as conn:
        found = conn.execute("SELECT 1 FROM tenants WHERE tenant_id = %s", (wanted,)).fetchone()
    if found is None:
        raise unknown_tenant(wanted)
    return wanted


def require(role: str, *, scope: str = TENANT, omitted: str = "all tenants") -> Callable:
    """Protect a view: a valid bearer token with at least ``role``, within ``scope``.

    ``omitted`` documents what a platform token without ``?tenant`` acts on (TENANT_OR_ALL).

    Put it anywhere under ``@blp.route``; the check runs before argument parsing whichever
    the order (the app checks it in ``before_request``), and it documents the operation.
    """
    role_rank(role)
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; expected one of {', '.join(SCOPES)}")

    def decorator(func):
        @wraps(func)
        def wrapper(*args, **kwargs):
            authorize(role, scope)
            return func(*args, **kwargs)

        wrapper._apidoc = deepcopy(getattr(func, "_apidoc", {}))
        wrapper._apidoc["siyu_auth"] = {"role": role, "scope": scope, "omitted": omitted}
        wrapper.siyu_require = (role, scope)
        return wrapper

    return decorator


def public(func):
    """Mark a view under the API prefix as deliberately open (none in this build)."""
    func.siyu_public = True
    return func


def auth_doc(doc: dict, doc_info: dict, **kwargs) -> dict:
    """flask-smorest doc callback: security, 401/403 and the ``tenant`` parameter of a route."""
    auth = doc_info.get("siyu_auth")
    if not auth:
        return doc
    doc["security"] = [{SECURITY_SCHEME: []}]
    responses = doc.setdefault("responses", {})
    responses.setdefault(401, "UNAUTHORIZED")
    responses.setdefault(403, "FORBIDDEN")
    scope = auth["scope"]
    if scope in (TENANT, TENANT_OR_ALL):
        responses.setdefault(404, "NOT_FOUND")
        doc.setdefault("parameters", []).append(
            {
                "in": "query",
                "name": "tenant",
                "required": False,
                "schema": {"type": "string"},
                "description": "Platform tokens only: the tenant to act on"
                + ("" if scope == TENANT else f" (omitted: {auth.get('omitted', 'all tenants')})")
                + ". A tenant token always acts on its own tenant.",
            }
        )
    # Any route: NUL characters or a bad ?tenant= (400); the database down (503).
    responses.setdefault(400, "BAD_REQUEST")
    responses.setdefault(503, "SERVICE_UNAVAILABLE")
    # The tenant's admin API rate limit (shared/ratelimit.py), with Retry-After.
    responses.setdefault(429, "TOO_MANY_REQUESTS")
    if doc_info.get("siyu_path_params"):
        responses.setdefault(404, "NOT_FOUND")
    if kwargs.get("method") in ("post", "put", "patch"):
        responses.setdefault(413, "REQUEST_ENTITY_TOO_LARGE")
    # The docstring fills summary/description afterwards; the requirement goes in extensions.
    doc["x-siyu-role"] = auth["role"]
    doc["x-siyu-scope"] = scope
    return doc
