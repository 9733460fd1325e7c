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

Every request reads the token's row (one primary-key look-up, shared/api/tokens.py), so a
revocation or an expiry (``expires_at``, outreach migration 0007) takes effect at once in every
process, whoever wrote it (API, CLI or SQL): nothing about validity is cached, so there is no
notification to miss (docs/security.md "Tokens"). Only the ``last_used_at`` write is coalesced,
at most once per token per ``ttl_s`` and process (shared/tokens.py).
"""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from datetime import datetime
from functools import wraps

from flask import g, request

from shared.api.errors import ApiError, forbidden, unauthenticated, unknown_tenant
from shared.tokens import Principal, role_rank

TENANT = "tenant"
TENANT_OR_ALL = "tenant_or_all"
PLATFORM = "platform"
ANY = "any"
SCOPES = (TENANT, TENANT_OR_ALL, PLATFORM, ANY)

SECURITY_SCHEME = "bearerAuth"


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
