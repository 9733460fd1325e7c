"""Bearer tokens of the business-event API: created once, stored as SHA-256, one tenant each.

A token has a public id (``evt_...``) to list and revoke it by, and may expire (``expires_at``,
migration 0003). Validity is read from the table on every batch, so a revocation or an expiry
takes effect at once in every process and replica (docs/security.md "Tokens"). The store is
shared/tokens.py's, as for admin tokens; this module gives its refusals ingest's answers and holds
`siyu ingest token create|list|revoke`.
"""

from __future__ import annotations

from datetime import datetime

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from services.ingest.errors import Refused
from shared import tokens
from shared.db import connect
from shared.errors import ConfigError, SiyuError, UnknownTenant
from shared.tenants import TenantRegistry
from shared.tokens import DEFAULT_CACHE_TTL_S, EVENT_TOKENS, TokenExpired, TokenStoreUnavailable


def create_token(
    dsn: str, tenant_id: str, name: str, *, schema: str = "ingest", expires_at=None
) -> str:
    """Store a new token's hash and return the token (the only time it is visible)."""
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        _, token = tokens.insert_token(
            conn, EVENT_TOKENS, tenant_id=tenant_id, name=name, schema=schema,
            expires_at=expires_at,
        )  # fmt: skip
    return token


class TokenStore(tokens.TokenStore):
    """shared/tokens.py's store of event tokens, its refusals as ingest's ``Refused``. Only the
    ``last_used_at`` write is spaced out (``ttl_s``)."""

    def __init__(self, pool: ConnectionPool, *, ttl_s: float = DEFAULT_CACHE_TTL_S):
        super().__init__(pool, EVENT_TOKENS, ttl_s=ttl_s)

    def tenant_for(self, token: str) -> str | None:
        """The token's tenant; None if unknown or revoked; 401 ``token_expired`` if expired."""
        try:
            found = self.authenticate(token)
        except (TokenStoreUnavailable, psycopg.Error):
            raise Refused(
                "unavailable", "token store unavailable; retry later", status=503
            ) from None
        except TokenExpired as exc:
            raise Refused("token_expired", str(exc), status=401) from None
        return found and found.tenant_id


# --- siyu ingest token create / list / revoke ---------------------------------------------------


def _connect(settings):
    """On ``settings.ingest_schema`` (SIYU_INGEST_SCHEMA: tests use private schemas)."""
    return connect(settings.require_database(), settings.ingest_schema)


def main(
    settings,
    *,
    action: str = "create",
    tenant: str | None = None,
    name: str | None = None,
    expires: str | None = None,
    token_id: str | None = None,
) -> int:
    """`siyu ingest token create|list|revoke` (tenants from the tenants file)."""
    from datetime import UTC

    from shared.expiry import parse_expires
    from shared.tenants import load_tenants

    if tenant is not None:
        registry: TenantRegistry = load_tenants(settings.tenants_path)
        if registry.get(tenant) is None:
            raise UnknownTenant(f"unknown tenant {tenant!r} (not in {settings.tenants_path})")
    try:
        with _connect(settings) as conn:
            if action == "create":
                expires_at = parse_expires(expires) if expires else None
                _, token = tokens.insert_token(
                    conn, EVENT_TOKENS, tenant_id=tenant, name=name or "events-api",
                    expires_at=expires_at,
                )  # fmt: skip
                print(token)
            elif action == "list":
                rows = tokens.list_tokens(conn, EVENT_TOKENS, tenant_id=tenant)
                tokens.print_tokens(rows, datetime.now(UTC))
            elif action == "revoke":
                row = tokens.revoke_token(conn, EVENT_TOKENS, token_id, tenant_id=tenant)
                if row is None:
                    raise SiyuError(f"no event API token {token_id!r}", code="not_found")
                print(f"revoked {row['token_id']} ({row['tenant_id']}, {row['name']})")
            else:
                raise ValueError(f"unknown action {action!r}")
    except psycopg.errors.UndefinedTable:
        raise ConfigError("the ingest tables are missing: run `siyu migrate` first") from None
    except psycopg.OperationalError as exc:
        raise ConfigError(f"cannot reach PostgreSQL: {str(exc).strip()[:200]}") from None
    return 0
