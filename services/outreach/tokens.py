"""Admin API tokens and the tenants they belong to, in the outreach schema (0001_admin.sql).

``siyu token create`` prints a token once (``siyu_adm_...``); only its SHA-256 is stored. The
schema is ``Settings.outreach_schema`` (``SIYU_OUTREACH_SCHEMA``; tests use private ones).
"""

from __future__ import annotations

import psycopg

from shared import tokens
from shared.api.audit import CLI_ACTOR, audit
from shared.config import Settings
from shared.db import connect
from shared.errors import ConfigError, SiyuError, UnknownTenant
from shared.tenants import TenantRegistry, load_tenants
from shared.tokens import ADMIN_TOKENS, TOKEN_ROLES

# --- tenants -----------------------------------------------------------------------------------


def seed_tenants(conn, registry: TenantRegistry) -> int:
    """Add the tenants file's tenants that the table lacks (never overwrites API edits), except
    tenants deleted through the API: a file still listing one does not bring it back
    (services/outreach/tenant_deletion.py)."""
    added = 0
    for tenant in registry:
        cur = conn.execute(
            "INSERT INTO tenants (tenant_id, name, mode, lifecycle_model, timezone) "
            "SELECT %s, %s, %s, %s, %s "
            "WHERE NOT EXISTS (SELECT 1 FROM deleted_tenants WHERE tenant_id = %s) "
            "ON CONFLICT (tenant_id) DO NOTHING",
            (tenant.id, tenant.name, tenant.mode, tenant.lifecycle_model, tenant.timezone,
             tenant.id),
        )  # fmt: skip
        added += cur.rowcount
    return added


def tenant_exists(conn, tenant_id: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM tenants WHERE tenant_id = %s", (tenant_id,)).fetchone()
        is not None
    )


# --- tokens (shared/tokens.py: the same store as ingest's event API tokens) --------------------


def create_token(
    conn, *, tenant_id: str | None, role: str, name: str, expires_at=None
) -> tuple[dict, str]:
    """Store a new token; return its row (no hash) and the token, visible this once only.

    ``expires_at`` (None: never) is when the token starts being refused (401 token_expired).
    """
    _check_role(role)
    return tokens.insert_token(
        conn, ADMIN_TOKENS, tenant_id=tenant_id, role=role, name=name, expires_at=expires_at
    )


def _check_role(role: str) -> None:
    if role not in TOKEN_ROLES:
        raise SiyuError(
            f"unknown role {role!r}; expected one of {', '.join(TOKEN_ROLES)}", code="unknown_role"
        )


def list_tokens(
    conn, *, tenant_id: str | None, limit: int, after: tuple[str, str] | None = None
) -> list[dict]:
    """A tenant's tokens (None: the platform tokens), newest first, after the
    (created_at, token_id) keyset ``after``."""
    return tokens.list_tokens(
        conn, ADMIN_TOKENS, tenant_id=tenant_id, platform=True, limit=limit, after=after
    )


def revoke_token(conn, token_id: str, *, tenant_id: str | None) -> dict | None:
    """Revoke one of a tenant's tokens (None: a platform token), idempotent; None if there is
    no such token there. Effective at once in every process: validity is read per request."""
    return tokens.revoke_token(conn, ADMIN_TOKENS, token_id, tenant_id=tenant_id, platform=True)


# --- siyu token create / list / revoke ----------------------------------------------------------


def main(
    settings: Settings,
    *,
    action: str = "create",
    tenant: str | None = None,
    role: str = "viewer",
    name: str | None = None,
    expires: str | None = None,
    token_id: str | None = None,
) -> int:
    """`siyu token create|list|revoke`: admin API tokens (tenant None: platform tokens)."""
    from datetime import UTC, datetime

    from shared.expiry import parse_expires

    if action == "create":
        _check_role(role)
    expires_at = parse_expires(expires) if expires else None
    registry = load_tenants(settings.tenants_path)
    schema = settings.outreach_schema
    try:
        with connect(settings.require_database(), schema) as conn:
            seed_tenants(conn, registry)
            if tenant is not None and not tenant_exists(conn, tenant):
                raise UnknownTenant(
                    f"unknown tenant {tenant!r} (not in {settings.tenants_path} "
                    "nor created through the API)"
                )
            if action == "list":
                rows = tokens.list_tokens(
                    conn, ADMIN_TOKENS, tenant_id=tenant, limit=None, by_tenant=True
                )
                tokens.print_tokens(rows, datetime.now(UTC), role=True)
                return 0
            if action == "revoke":
                row = tokens.revoke_token(conn, ADMIN_TOKENS, token_id, tenant_id=tenant)
                if row is None:
                    raise SiyuError(f"no admin API token {token_id!r}", code="not_found")
                audit(
                    conn,
                    CLI_ACTOR,
                    row["tenant_id"],
                    "token.revoke",
                    token_id,
                    {"name": row["name"]},
                )
                print(f"revoked {token_id} ({row['tenant_id'] or 'platform'}, {row['name']})")
                return 0
            name = name or ("platform-admin" if tenant is None else f"{tenant}-{role}")
            row, token = create_token(
                conn, tenant_id=tenant, role=role, name=name, expires_at=expires_at
            )
            details = {"role": role, "name": name, "platform": tenant is None}
            if expires_at is not None:
                details["expires_at"] = expires_at.isoformat()
            audit(conn, CLI_ACTOR, tenant, "token.create", row["token_id"], details)
    except psycopg.errors.UndefinedTable:
        raise ConfigError(
            f"the admin tables are missing in schema {schema!r}: run `siyu migrate` first"
        ) from None
    except psycopg.OperationalError as exc:
        raise ConfigError(f"cannot reach PostgreSQL: {str(exc).strip()[:200]}") from None
    print(token)
    return 0
