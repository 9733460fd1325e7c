"""Bearer tokens, both kinds: admin API tokens (``siyu_adm_...``, outreach migration 0001_admin,
with a role) and business-event API tokens (``siyu_ev_...``, ingest migrations 0002/0003).

Each kind has its own ``api_tokens`` table, but one shape: a public id to list and revoke a token
by, the SHA-256 of the secret (the secret is shown once, never stored), a tenant (NULL: a platform
token, admin only), a name, an optional expiry and a revocation time. A ``TokenKind`` says what
differs: the prefixes, and what a principal carries beyond its tenant (an admin token's role).

Tokens are looked up by their hash, so comparing a guess never runs a byte-by-byte comparison of
the secret (no timing oracle). Validity (revoked, expired) is read from the table on every call,
so a revocation or an expiry takes effect at once in every process, whoever wrote it (API, CLI or
SQL): nothing about it is cached (docs/security.md "Tokens"). Only the ``last_used_at`` write is
spaced out, at most once per token per ``ttl_s`` and process.

The callers turn ``TokenExpired`` and ``TokenStoreUnavailable`` into their own answers (the admin
API's ApiError, ingest's Refused) and write the audit records.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from shared.db import autocommit
from shared.spacing import Spacing

# The roles of an admin token, lowest first: viewer < operator < admin.
TOKEN_ROLES = ("viewer", "operator", "admin")
MAX_CACHE_TTL_S = 60.0
DEFAULT_CACHE_TTL_S = 30.0
MAX_TOKEN_LENGTH = 200


@dataclass(frozen=True)
class TokenKind:
    """What one kind of token is: its prefixes and the columns a principal carries beyond
    ``token_id, tenant_id, name, expires_at`` (in table order, after ``tenant_id``)."""

    prefix: str
    id_prefix: str
    carries: tuple[str, ...] = ()

    @property
    def columns(self) -> sql.Composable:
        """Every column of a token row but its hash."""
        names = ("token_id", "tenant_id", *self.carries, "name", "created_at", "last_used_at",
                 "expires_at", "revoked_at")  # fmt: skip
        return sql.SQL(", ").join(map(sql.Identifier, names))

    def new(self) -> tuple[str, str]:
        """A fresh ``(token_id, token)``: the id is public, the token is shown once."""
        return self.id_prefix + secrets.token_hex(6), self.prefix + secrets.token_urlsafe(32)


ADMIN_TOKENS = TokenKind("siyu_adm_", "tok_", carries=("role",))
EVENT_TOKENS = TokenKind("siyu_ev_", "evt_")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def role_rank(role: str) -> int:
    """0 for viewer, 1 for operator, 2 for admin; ValueError for anything else."""
    try:
        return TOKEN_ROLES.index(role)
    except ValueError:
        raise ValueError(
            f"unknown role {role!r}; expected one of {', '.join(TOKEN_ROLES)}"
        ) from None


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's id, name, tenant (None: platform), expiry and, for an admin
    token, its role (None for an event token)."""

    token_id: str
    name: str
    role: str | None
    tenant_id: str | None
    expires_at: datetime | None = None

    @property
    def is_platform(self) -> bool:
        return self.tenant_id is None

    def has(self, role: str) -> bool:
        return role_rank(self.role) >= role_rank(role)


class TokenExpired(Exception):
    def __init__(self, expires_at: datetime):
        super().__init__(f"token expired at {expires_at.isoformat()}")
        self.expires_at = expires_at


class TokenStoreUnavailable(Exception):
    """The database did not answer (down, pool exhausted or closed): retry later."""


class TokenStore:
    """Principal of a token of ``kind``, from ``api_tokens`` on ``pool``'s search_path, read per
    call. ``ttl_s`` (0..60 s) only spaces out the ``last_used_at`` writes of one token by this
    process; validity is never cached."""

    def __init__(
        self,
        pool: ConnectionPool,
        kind: TokenKind,
        *,
        ttl_s: float = DEFAULT_CACHE_TTL_S,
        max_entries: int = 10_000,
    ):
        if not 0 <= ttl_s <= MAX_CACHE_TTL_S:
            raise ValueError(f"ttl_s must be within 0..{MAX_CACHE_TTL_S:g} seconds")
        self.pool = pool
        self.kind = kind
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._touch = Spacing(ttl_s, max_entries=max_entries)  # last_used_at writes
        role = sql.Identifier("role") if "role" in kind.carries else sql.SQL("NULL")
        self._select = sql.SQL(
            "SELECT token_id, name, {} AS role, tenant_id, expires_at, "
            "expires_at IS NOT NULL AND expires_at <= now() AS expired "
            "FROM api_tokens WHERE token_hash = %s AND revoked_at IS NULL"
        ).format(role)

    def authenticate(self, token: str) -> Principal | None:
        """The token's principal; None if unknown or revoked. TokenExpired if expired,
        TokenStoreUnavailable if the database cannot be reached (other database errors pass)."""
        if not token.startswith(self.kind.prefix) or len(token) > MAX_TOKEN_LENGTH:
            return None
        try:
            with autocommit(self.pool) as conn:  # one round trip per statement
                row = conn.execute(self._select, (hash_token(token),)).fetchone()
                if row is not None and not row["expired"] and self._touch.due(row["token_id"]):
                    conn.execute(
                        "UPDATE api_tokens SET last_used_at = now() WHERE token_id = %s",
                        (row["token_id"],),
                    )
        except (psycopg.OperationalError, PoolTimeout, PoolClosed):
            raise TokenStoreUnavailable() from None
        if row is None:
            return None
        if row["expired"]:
            raise TokenExpired(row["expires_at"])
        return Principal(
            token_id=row["token_id"],
            name=row["name"],
            role=row["role"],
            tenant_id=row["tenant_id"],
            expires_at=row["expires_at"],
        )


# --- create, list, revoke ----------------------------------------------------------------------


def _table(schema: str | None) -> sql.Composable:
    """``api_tokens`` in ``schema``; None: on the connection's search_path."""
    return sql.Identifier(schema, "api_tokens") if schema else sql.Identifier("api_tokens")


def _owner(tenant_id: str | None, *, platform: bool) -> sql.Composable:
    """Whose tokens: a tenant's; with no tenant, the platform tokens (``platform``) or all."""
    if tenant_id is not None:
        return sql.SQL("tenant_id = %(tenant)s")
    return sql.SQL("tenant_id IS NULL" if platform else "TRUE")


def insert_token(
    conn,
    kind: TokenKind,
    *,
    tenant_id: str | None,
    name: str,
    expires_at: datetime | None = None,
    schema: str | None = None,
    **carried: str,
) -> tuple[dict, str]:
    """Store a new token (``carried``: the kind's columns, e.g. role); its row (no hash) and the
    token, visible this once only. ``expires_at`` (None: never) is when it starts being refused."""
    token_id, token = kind.new()
    values = {"token_id": token_id, "token_hash": hash_token(token), "tenant_id": tenant_id}
    values |= {c: carried[c] for c in kind.carries}
    values |= {"name": name, "expires_at": expires_at}
    row = conn.execute(
        sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING {}").format(
            _table(schema),
            sql.SQL(", ").join(map(sql.Identifier, values)),
            sql.SQL(", ").join(map(sql.Placeholder, values)),
            kind.columns,
        ),
        values,
    ).fetchone()
    return row, token


def list_tokens(
    conn,
    kind: TokenKind,
    *,
    tenant_id: str | None,
    platform: bool = False,
    schema: str | None = None,
    limit: int | None = 1000,
    after: tuple[str, str] | None = None,
    by_tenant: bool = False,
) -> list[dict]:
    """A tenant's tokens (None: the platform tokens if ``platform``, else every token), newest
    first (``by_tenant``: platform tokens, then by tenant), after the (created_at, token_id)
    keyset ``after``; ``limit`` None: all."""
    order = "tenant_id NULLS FIRST, " if by_tenant else ""
    return conn.execute(
        sql.SQL(
            "SELECT {} FROM {} WHERE {} "
            "AND (%(at)s::timestamptz IS NULL OR (created_at, token_id) < (%(at)s, %(id)s)) "
            "ORDER BY {}created_at DESC, token_id DESC LIMIT %(n)s"
        ).format(
            kind.columns, _table(schema), _owner(tenant_id, platform=platform), sql.SQL(order)
        ),
        {
            "tenant": tenant_id,
            "at": after[0] if after else None,
            "id": after[1] if after else None,
            "n": limit,
        },
    ).fetchall()


def revoke_token(
    conn,
    kind: TokenKind,
    token_id: str,
    *,
    tenant_id: str | None,
    platform: bool = False,
    schema: str | None = None,
) -> dict | None:
    """Revoke a token (idempotent); None if there is no such token among ``tenant_id``'s (None:
    the platform tokens if ``platform``, else any token)."""
    return conn.execute(
        sql.SQL(
            "UPDATE {} SET revoked_at = coalesce(revoked_at, now()) "
            "WHERE token_id = %(id)s AND {} RETURNING {}"
        ).format(_table(schema), _owner(tenant_id, platform=platform), kind.columns),
        {"id": token_id, "tenant": tenant_id},
    ).fetchone()


def revoke_tenant_tokens(conn, tenant_id: str, *, schema: str | None = None) -> list[str]:
    """Revoke every live token of a tenant (it is being deleted); the ids revoked."""
    rows = conn.execute(
        sql.SQL(
            "UPDATE {} SET revoked_at = now() "
            "WHERE tenant_id = %s AND revoked_at IS NULL RETURNING token_id"
        ).format(_table(schema)),
        (tenant_id,),
    ).fetchall()
    return [r["token_id"] for r in rows]


# --- what `siyu token list` and `siyu ingest token list` print: never a secret -----------------


def token_status(row: dict, now: datetime) -> str:
    if row["revoked_at"] is not None:
        return "revoked"
    if row["expires_at"] is not None and row["expires_at"] <= now:
        return "expired"
    return "active"


def _when(label: str, at: datetime | None, otherwise: str) -> str:
    return f"{label} {at.isoformat(timespec='seconds')}" if at else otherwise


def print_tokens(rows: list[dict], now: datetime, *, role: bool = False) -> None:
    """Tab-separated, one line per token: id, tenant, (role,) status, name, expiry, last use."""
    for row in rows:
        cells = [row["token_id"], row["tenant_id"] or "(platform)"]
        cells += [row["role"]] if role else []
        cells += [
            token_status(row, now),
            row["name"],
            _when("expires", row["expires_at"], "no expiry"),
            _when("last used", row["last_used_at"], "never used"),
        ]
        print("\t".join(cells))
    if not rows:
        print("no tokens")
