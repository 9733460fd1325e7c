"""Platform rate limits shared by every outreach worker: a token bucket per WeCom corp or OA app
in ``rate_buckets`` (migration 0004).

WeChat counts a corp's (or an app's) calls whatever process makes them, so a bucket per process
lets N workers send N times the configured rate and earn 45009. Here each call takes its slot with
one atomic statement: the row lock orders concurrent takers, the database's clock refills the
bucket (so hosts need not agree on time), and the bucket may go below zero: a caller that got
slot -k waits k/rate seconds, so callers of every process are spaced 1/rate apart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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


# A welcome's slot (``acquire_within``): the bucket's tokens refilled up to now, under its row lock.
REFILLED = """
SELECT LEAST(%(burst)s, tokens + %(rate)s
       * GREATEST(0, EXTRACT(EPOCH FROM clock_timestamp() - updated_at)::float8)) AS tokens
FROM rate_buckets WHERE bucket = %(bucket)s FOR UPDATE
"""

_local = threading.local()


class SlotTooLate(Exception):
    """No slot within ``max_wait``: the bucket is unchanged."""


@contextmanager
def prepaid() -> Iterator[None]:
    """The caller took its slot (``acquire_within``): the client's own ``acquire`` inside this
    block is free once (a token refetch after it waits as usual)."""
    _local.prepaid = True
    try:
        yield
    finally:
        _local.prepaid = False


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
        if getattr(_local, "prepaid", False):
            _local.prepaid = False
            return 0.0
        return self._take(
            lambda conn, params: conn.execute(TAKE, params, prepare=True).fetchone()["tokens"]
        )

    def acquire_within(self, max_wait: float) -> float:
        """A slot whose wait is at most ``max_wait`` seconds (waited here), or SlotTooLate with
        the bucket untouched: a welcome never queues past its window behind campaign sends."""

        def take(conn, params) -> float:
            row = conn.execute(REFILLED, params).fetchone()
            if row is None:
                return conn.execute(TAKE, params).fetchone()["tokens"]
            tokens = row["tokens"] - 1
            if tokens < 0 and -tokens / self.rate > max_wait:
                raise SlotTooLate(-tokens / self.rate)
            conn.execute(
                "UPDATE rate_buckets SET tokens = %s, updated_at = GREATEST(updated_at, "
                "clock_timestamp()) WHERE bucket = %s",
                (tokens, self.bucket),
            )
            return tokens

        return self._take(take)

    def _take(self, take) -> float:
        """Take a slot with ``take(conn, params) -> tokens left`` (in one transaction) and wait
        for it; return the seconds waited."""
        params = {"bucket": self.bucket, "rate": self.rate, "burst": self.burst}
        try:
            with self.pool.connection() as conn:
                tokens = take(conn, params)
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            # No slot without the database: the caller's retry path (a send goes back to pending).
            raise WeComUnavailable(None, f"rate limiter: database unavailable ({exc})") from None
        wait = 0.0 if tokens >= 0 else -tokens / self.rate
        if wait > 0:
            self.sleep(wait)
        return wait
