"""Bearer tokens of the business-event API: created once, stored as SHA-256, one tenant each."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from services.ingest.errors import Refused
from shared.config import TenantRegistry
from shared.errors import UnknownTenant

PREFIX = "siyu_ev_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(dsn: str, tenant_id: str, name: str, *, schema: str = "ingest") -> str:
    """Store a new token's hash and return the token (the only time it is visible)."""
    token = PREFIX + secrets.token_urlsafe(32)
    with psycopg.connect(dsn) as conn:
        conn.execute(
            sql.SQL(
                "INSERT INTO {}.api_tokens (token_hash, tenant_id, name) VALUES (%s, %s, %s)"
            ).format(sql.Identifier(schema)),
            (hash_token(token), tenant_id, name),
        )
    return token


class TokenStore:
    """Looks tokens up by hash (no timing oracle on the token), cached for ``ttl_s`` seconds.

    A revoked token therefore stops working within ``ttl_s``; the cache keeps a database round
    trip off every event batch.
    """

    def __init__(self, pool: ConnectionPool, *, ttl_s: float = 60.0):
        self.pool = pool
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    def tenant_for(self, token: str) -> str | None:
        if not token.startswith(PREFIX) or len(token) > 200:
            return None
        digest = hash_token(token)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
        if hit and hit[0] > now:
            return hit[1]
        try:
            with self.pool.connection(timeout=2) as conn:
                row = conn.execute(
                    "UPDATE api_tokens SET last_used_at = now() "
                    "WHERE token_hash = %s AND revoked_at IS NULL RETURNING tenant_id",
                    (digest,),
                ).fetchone()
        except (psycopg.Error, PoolTimeout, PoolClosed):
            raise Refused(
                "unavailable", "token store unavailable; retry later", status=503
            ) from None
        tenant = row["tenant_id"] if row else None
        with self._lock:
            if len(self._cache) > 10_000:  # bounded: a flood of random tokens cannot grow it
                self._cache.clear()
            self._cache[digest] = (now + self.ttl_s, tenant)
        return tenant


def main(settings, *, tenant: str, name: str | None) -> int:
    """`siyu ingest token create`: print a new token for a tenant of the tenants file."""
    from shared.config import load_tenants

    registry: TenantRegistry = load_tenants(settings.tenants_path)
    if registry.get(tenant) is None:
        raise UnknownTenant(f"unknown tenant {tenant!r} (not in {settings.tenants_path})")
    token = create_token(settings.require_database(), tenant, name or "events-api")
    print(token)
    return 0
