"""TenantLimiter without a database: what it asks PostgreSQL, what it answers from the level it
last saw, and that it lets requests through when the database is away (shared/ratelimit.py)."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from psycopg_pool import ConnectionPool

from shared.limits import DEFAULT_LIMITS, Limits
from shared.ratelimit import RateLimited, TenantLimiter

LIMITS = Limits(api_per_s=1.0, api_burst=10).over(DEFAULT_LIMITS)


class FakePool:
    """Answers each take with the next canned row; records the buckets asked for."""

    def __init__(self, *rows):
        self.rows, self.asked = list(rows), []

    @contextmanager
    def connection(self, timeout=None):
        yield self

    def execute(self, query, params, prepare=False):
        self.asked.append((params["bucket"], params["cost"]))
        row = self.rows.pop(0)
        return type("Cursor", (), {"fetchone": lambda _self: row})()


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_refusal_it_can_prove_is_answered_without_the_database():
    pool, clock = FakePool({"granted": True, "tokens": 0.5}), Clock()
    limiter = TenantLimiter(pool, lambda tenant: LIMITS, clock=clock)
    limiter.take("api", "acme")
    clock.now += 0.2  # 0.5 + 0.2 refilled < 1: no process could have more for acme
    with pytest.raises(RateLimited) as refused:
        limiter.take("api", "acme")
    assert refused.value.retry_after_s == 1
    assert refused.value.headers == {"Retry-After": "1"}
    with pytest.raises(RateLimited):
        limiter.check("api", "acme")
    assert pool.asked == [("api:acme", 1.0)]
    clock.now += 0.4  # 1.1 by now at most: the database decides
    pool.rows.append({"granted": False, "tokens": 0.3})  # other processes took some
    with pytest.raises(RateLimited) as refused:
        limiter.take("api", "acme")
    assert refused.value.retry_after_s == 1
    assert pool.asked == [("api:acme", 1.0), ("api:acme", 1.0)]


def test_another_tenant_is_asked_for_on_its_own_bucket():
    pool = FakePool({"granted": False, "tokens": 0.0}, {"granted": True, "tokens": 9.0})
    limiter = TenantLimiter(pool, lambda tenant: LIMITS, clock=Clock())
    with pytest.raises(RateLimited):
        limiter.take("api", "acme")
    limiter.take("api", "bloom")
    limiter.check("api", "bloom")
    assert pool.asked == [("api:acme", 1.0), ("api:bloom", 1.0)]


def test_a_cost_above_the_burst_asks_for_a_full_bucket_and_the_wait_is_rounded_up():
    pool = FakePool({"granted": False, "tokens": 2.5})
    limiter = TenantLimiter(pool, lambda tenant: LIMITS, clock=Clock())
    with pytest.raises(RateLimited) as refused:
        limiter.take("api", "acme", cost=50)
    assert pool.asked == [("api:acme", 10.0)]
    assert refused.value.retry_after_s == 8  # 7.5 missing at 1/s
    assert refused.value.details["burst"] == 10
    assert refused.value.code == "rate_limited"


def test_without_the_database_requests_go_through():
    closed = ConnectionPool("dbname=nothing", open=False)
    limiter = TenantLimiter(closed, lambda tenant: LIMITS)
    for _ in range(20):
        limiter.take("api", "acme")


def test_an_unknown_surface_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown surface"):
        TenantLimiter(FakePool(), lambda tenant: LIMITS).take("webhooks", "acme")
