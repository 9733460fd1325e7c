"""Platform rate limits shared by every outreach worker: a token bucket per WeCom corp or OA app
in ``rate_buckets`` (migration 0004).

WeChat counts a corp's (or an app's) calls whatever process makes them, so a bucket per process
lets N workers send N times the configured rate and earn 45009. Here each call takes its slot with
one atomic statement: the row lock orders concurrent takers, the database's clock refills the
bucket (so hosts need not agree on time), and the bucket may go below zero: a caller that got
slot -k waits k/rate seconds, so callers of every process are spaced 1/rate apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
import psycopg_pool

from shared.wechat import WeComUnavailable

TAKE = """
INSERT INTO rate_buckets AS b (bucket, tokens, updated_at)
VALUES (%(bucket)s, %(burst)s - 1, clock_timestamp())
ON CONFLICT (bucket) DO UPDATE SET
    tokens = LEAST(%(burst)s, b.tokens + %(rate)s
             * GREATEST(0, EXTRACT(EPOCH FROM clock_timestamp() - b.updated_at)::float8)) - 1,
    updated_at = GREATEST(b.updated_at, clock_timestamp())
RETURNING tokens
"""


class SharedRateLimiter:
    """``rate`` calls per second for every process taking from ``bucket``; bursts of ``burst``."""

    def __init__(
        self,
        pool: psycopg_pool.ConnectionPool,
        bucket: str,
        rate: float,
        *,
        burst: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.pool, self.bucket, self.rate = pool, bucket, float(rate)
        self.burst = max(1.0, float(burst))
        self.sleep = sleep

    def __repr__(self) -> str:
        return f"SharedRateLimiter({self.bucket!r}, {self.rate:g}/s)"

    def acquire(self) -> float:
        """Wait for a slot; return the seconds waited."""
        params = {"bucket": self.bucket, "rate": self.rate, "burst": self.burst}
        try:
            with self.pool.connection() as conn:
                tokens = conn.execute(TAKE, params, prepare=True).fetchone()["tokens"]
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            # No slot without the database: the caller's retry path (a send goes back to pending).
            raise WeComUnavailable(None, f"rate limiter: database unavailable ({exc})") from None
        wait = 0.0 if tokens >= 0 else -tokens / self.rate
        if wait > 0:
            self.sleep(wait)
        return wait
