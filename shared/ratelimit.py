"""Per-tenant request rate limits (docs/security.md "Rate limits"): a token bucket per tenant and
surface in PostgreSQL, shared by every gunicorn worker and replica.

A bucket is one row of ``rate_buckets`` (ingest migration 0005; the admin API uses outreach's
table of migration 0004, whose platform buckets it never touches). Taking is one statement:
the row lock orders concurrent takers of the same tenant, the database's clock refills the
bucket, and a take that does not fit changes nothing (the ``WHERE`` of the upsert), so a
refused request costs the tenant nothing and the bucket never goes below zero.

Each process remembers the level it last saw per bucket. Other processes only ever take from a
bucket, so that level plus the refill since is an upper bound of the true level: when it is too
low for a request, the request is refused without the database. A tenant hammering past its
limit is therefore answered locally, and its flood neither holds connections nor queues on a
row lock that another tenant's requests need (they never touch its row anyway).

If the database cannot be reached within ``timeout_s``, requests are let through (logged): a
limit protects the service, and an outage of it must not refuse every tenant.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
import structlog
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from shared.errors import SiyuError
from shared.limits import SURFACES, UNITS, Limits, Rate
from shared.metrics import RATE_LIMITED
from shared.tenants import TenantRegistry

log = structlog.get_logger("siyu.ratelimit")

NO_TENANT = "-"  # a platform token acting on no tenant: a bucket of its own

# One round trip: the upsert takes ``cost`` if it fits (else locks and changes nothing), and the
# level is read back either way. A refused take reads the statement's snapshot, at worst a level
# a little higher than the truth: a shorter Retry-After, never a wrong refusal.
TAKE = """
WITH taken AS (
    INSERT INTO rate_buckets AS b (bucket, tokens, updated_at)
    VALUES (%(bucket)s, %(burst)s - %(cost)s, clock_timestamp())
    ON CONFLICT (bucket) DO UPDATE SET
        tokens = LEAST(%(burst)s, b.tokens + %(rate)s
                 * GREATEST(0, EXTRACT(EPOCH FROM clock_timestamp() - b.updated_at)::float8))
                 - %(cost)s,
        updated_at = GREATEST(b.updated_at, clock_timestamp())
    WHERE LEAST(%(burst)s, b.tokens + %(rate)s
          * GREATEST(0, EXTRACT(EPOCH FROM clock_timestamp() - b.updated_at)::float8))
          >= %(cost)s
    RETURNING tokens
)
SELECT true AS granted, tokens FROM taken
UNION ALL
SELECT false, LEAST(%(burst)s, tokens + %(rate)s
              * GREATEST(0, EXTRACT(EPOCH FROM clock_timestamp() - updated_at)::float8))
FROM rate_buckets
WHERE bucket = %(bucket)s AND NOT EXISTS (SELECT 1 FROM taken)
"""


class RateLimited(SiyuError):
    """Over a tenant's limit: answer 429 with ``Retry-After: retry_after_s``."""

    code = "rate_limited"

    def __init__(self, tenant_id: str, surface: str, rate: Rate, retry_after_s: int):
        unit = UNITS[surface]
        super().__init__(
            f"over this tenant's {surface} limit of {rate.describe(unit)}; "
            f"retry after {retry_after_s} s",
            code="rate_limited",
            details={
                "limit": surface,
                "per_s": rate.per_s,
                "burst": rate.burst,
                "retry_after_s": retry_after_s,
            },
        )
        self.tenant_id, self.surface, self.rate = tenant_id, surface, rate
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


def _seconds(missing: float, rate: Rate) -> int:
    """Whole seconds until ``missing`` tokens have been refilled (at least 1)."""
    return max(1, math.ceil(missing / rate.per_s))


@dataclass
class _Seen:
    at: float  # monotonic time the statement was sent: the refill since is never underestimated
    level: float


class TenantLimiter:
    """Buckets ``<surface>:<tenant>`` in ``rate_buckets`` on ``pool``'s search_path; the rates
    of a tenant from ``limits_for(tenant_id)`` (effective limits, defaults filled in)."""

    def __init__(
        self,
        pool: ConnectionPool,
        limits_for: Callable[[str], Limits],
        *,
        timeout_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.pool = pool
        self.limits_for = limits_for
        self.timeout_s = timeout_s
        self.clock = clock
        self._seen: dict[str, _Seen] = {}
        self._lock = threading.Lock()

    def rate(self, surface: str, tenant_id: str) -> Rate:
        if surface not in SURFACES:
            raise ValueError(f"unknown surface {surface!r}; expected one of {SURFACES}")
        return self.limits_for(tenant_id).rate(surface)

    def _local_refusal(self, key: str, rate: Rate, cost: float) -> int | None:
        with self._lock:
            seen = self._seen.get(key)
        if seen is None:
            return None
        level = min(rate.burst, seen.level + rate.per_s * max(0.0, self.clock() - seen.at))
        return _seconds(cost - level, rate) if level < cost else None

    def _refuse(self, tenant_id: str, surface: str, rate: Rate, retry_after_s: int):
        RATE_LIMITED.labels(tenant=tenant_id, surface=surface).inc()
        log.debug("rate_limited", surface=surface, retry_after_s=retry_after_s)  # the metric counts
        return RateLimited(tenant_id, surface, rate, retry_after_s)

    def check(self, surface: str, tenant_id: str) -> None:
        """Refuse at once if this process already knows the bucket is empty (no database):
        lets a caller skip reading a large body for a tenant that is being limited."""
        rate = self.rate(surface, tenant_id)
        wait = self._local_refusal(f"{surface}:{tenant_id}", rate, 1)
        if wait is not None:
            raise self._refuse(tenant_id, surface, rate, wait)

    def take(self, surface: str, tenant_id: str, cost: float = 1) -> None:
        """Take ``cost`` tokens from the tenant's bucket, or raise RateLimited."""
        rate = self.rate(surface, tenant_id)
        cost = min(float(cost), rate.burst)  # more than a full bucket could never be granted
        key = f"{surface}:{tenant_id}"
        wait = self._local_refusal(key, rate, cost)
        if wait is not None:
            raise self._refuse(tenant_id, surface, rate, wait)
        sent = self.clock()
        params = {"bucket": key, "rate": rate.per_s, "burst": float(rate.burst), "cost": cost}
        try:
            with self.pool.connection(timeout=self.timeout_s) as conn:
                row = conn.execute(TAKE, params, prepare=True).fetchone()
        except (psycopg.OperationalError, PoolTimeout, PoolClosed) as exc:
            log.warning("rate_limit_unavailable", surface=surface, error=type(exc).__name__)
            return  # fail open: see the module docstring
        if row is None:  # a concurrent first take, not yet visible to this statement's snapshot
            raise self._refuse(tenant_id, surface, rate, _seconds(cost, rate))
        with self._lock:
            if len(self._seen) > 10_000:  # bounded whatever ids arrive
                self._seen.clear()
            self._seen[key] = _Seen(sent, float(row["tokens"]))
        if not row["granted"]:
            raise self._refuse(tenant_id, surface, rate, _seconds(cost - row["tokens"], rate))


def registry_limits(registry: TenantRegistry, defaults: Limits) -> Callable[[str], Limits]:
    """Effective limits of a tenant: its ``limits:`` over ``defaults`` (also for a tenant, or
    NO_TENANT, that the tenants file does not list)."""
    effective = {t.id: t.limits.over(defaults) for t in registry}
    return lambda tenant_id: effective.get(tenant_id, defaults)
