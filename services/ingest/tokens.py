"""Bearer tokens of the business-event API: created once, stored as SHA-256, one tenant each.

A token has a public id (``evt_...``) to list and revoke it by, and may expire (``expires_at``,
migration 0003). Validity is read from the table on every batch, so a revocation or an expiry
takes effect at once in every process and replica (docs/security.md "Tokens").
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from datetime import datetime

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from services.ingest.errors import Refused
from shared.config import TenantRegistry
from shared.db import autocommit
from shared.errors import ConfigError, SiyuError, UnknownTenant
from shared.spacing import Spacing

PREFIX = "siyu_ev_"
ID_PREFIX = "evt_"
COLUMNS = "token_id, tenant_id, name, created_at, last_used_at, expires_at, revoked_at"
TOUCH_EVERY_S = 30.0  # last_used_at is written at most this often per token and process


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _table(schema: str | None) -> sql.Composable:
    return (
        sql.SQL("{}.api_tokens").format(sql.Identifier(schema)) if schema else sql.SQL("api_tokens")
    )


def insert_token(
    conn, tenant_id: str, name: str, *, schema: str | None = None, expires_at=None
) -> tuple[dict, str]:
    """Store a new token; its row (no hash) and the token, visible this once only."""
    token = PREFIX + secrets.token_urlsafe(32)
    row = conn.execute(
        sql.SQL(
            "INSERT INTO {} (token_id, token_hash, tenant_id, name, expires_at) "
            "VALUES (%s, %s, %s, %s, %s) RETURNING {}"
        ).format(_table(schema), sql.SQL(COLUMNS)),
        (ID_PREFIX + secrets.token_hex(6), hash_token(token), tenant_id, name, expires_at),
    ).fetchone()
    return row, token


def create_token(
    dsn: str, tenant_id: str, name: str, *, schema: str = "ingest", expires_at=None
) -> str:
    """Store a new token's hash and return the token (the only time it is visible)."""
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        _, token = insert_token(conn, tenant_id, name, schema=schema, expires_at=expires_at)
    return token


def list_tokens(
    conn,
    *,
    tenant_id: str | None,
    schema: str | None = None,
    limit: int = 1000,
    after: tuple[str, str] | None = None,
) -> list[dict]:
    """A tenant's tokens (None: every tenant's), newest first, after the (created_at, token_id)
    keyset ``after``."""
    return conn.execute(
        sql.SQL(
            "SELECT {} FROM {} "
            "WHERE (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s) "
            "AND (%(at)s::timestamptz IS NULL OR (created_at, token_id) < (%(at)s, %(id)s)) "
            "ORDER BY created_at DESC, token_id DESC LIMIT %(n)s"
        ).format(sql.SQL(COLUMNS), _table(schema)),
        {
            "tenant": tenant_id,
            "at": after[0] if after else None,
            "id": after[1] if after else None,
            "n": limit,
        },
    ).fetchall()


def revoke_token(
    conn, token_id: str, *, tenant_id: str | None, schema: str | None = None
) -> dict | None:
    """Revoke a token (idempotent); None if there is no such token (in ``tenant_id``, if given)."""
    return conn.execute(
        sql.SQL(
            "UPDATE {} SET revoked_at = coalesce(revoked_at, now()) "
            "WHERE token_id = %(id)s AND (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s) "
            "RETURNING {}"
        ).format(_table(schema), sql.SQL(COLUMNS)),
        {"id": token_id, "tenant": tenant_id},
    ).fetchone()


class TokenStore:
    """Looks tokens up by hash (no timing oracle on the token) on every call: revoked and expired
    tokens are refused at once. Only the ``last_used_at`` write is spaced out (``touch_every_s``).
    """

    def __init__(self, pool: ConnectionPool, *, touch_every_s: float = TOUCH_EVERY_S):
        self.pool = pool
        self.touch_every_s = touch_every_s
        self._touch = Spacing(touch_every_s)

    def tenant_for(self, token: str) -> str | None:
        """The token's tenant; None if unknown or revoked; 401 ``token_expired`` if expired."""
        if not token.startswith(PREFIX) or len(token) > 200:
            return None
        try:
            with autocommit(self.pool) as conn:  # one round trip per statement
                row = conn.execute(
                    "SELECT token_id, tenant_id, expires_at, "
                    "expires_at IS NOT NULL AND expires_at <= now() AS expired "
                    "FROM api_tokens WHERE token_hash = %s AND revoked_at IS NULL",
                    (hash_token(token),),
                ).fetchone()
                if row is not None and not row["expired"] and self._touch.due(row["token_id"]):
                    conn.execute(
                        "UPDATE api_tokens SET last_used_at = now() WHERE token_id = %s",
                        (row["token_id"],),
                    )
        except (psycopg.Error, PoolTimeout, PoolClosed):
            raise Refused(
                "unavailable", "token store unavailable; retry later", status=503
            ) from None
        if row is None:
            return None
        if row["expired"]:
            raise Refused(
                "token_expired", f"token expired at {row['expires_at'].isoformat()}", status=401
            )
        return row["tenant_id"]


# --- siyu ingest token create / list / revoke ---------------------------------------------------


SCHEMA_ENV = "SIYU_INGEST_SCHEMA"  # tests use private schemas, like SIYU_OUTREACH_SCHEMA


def _connect(settings):
    schema = os.environ.get(SCHEMA_ENV) or "ingest"
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
        raise ConfigError(f"{SCHEMA_ENV}={schema!r}: not a schema name")
    return psycopg.connect(
        settings.require_database(), row_factory=dict_row, options=f"-c search_path={schema}"
    )


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

    from shared.config import load_tenants
    from shared.expiry import parse_expires
    from shared.token_table import print_tokens

    if tenant is not None:
        registry: TenantRegistry = load_tenants(settings.tenants_path)
        if registry.get(tenant) is None:
            raise UnknownTenant(f"unknown tenant {tenant!r} (not in {settings.tenants_path})")
    try:
        with _connect(settings) as conn:
            if action == "create":
                expires_at = parse_expires(expires) if expires else None
                _, token = insert_token(conn, tenant, name or "events-api", expires_at=expires_at)
                print(token)
            elif action == "list":
                print_tokens(list_tokens(conn, tenant_id=tenant), datetime.now(UTC))
            elif action == "revoke":
                row = revoke_token(conn, token_id, tenant_id=tenant)
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
