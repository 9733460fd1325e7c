"""Platform rate limits shared across outreach workers (issue 13, item 8).

Two worker processes call one WeCom corp as fast as their limiter lets them, against the fake
platform set to refuse (45009) more than the configured rate plus a little: with a bucket per
process they send twice the rate and are refused; with the bucket in PostgreSQL
(services/outreach/rate_limits.py) they stay within it together.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from services.outreach.rate_limits import SharedRateLimiter
from shared.db import create_pool
from shared.migrations import migrate_service
from shared.tenants import DEMO_SECRETS, DEMO_TENANTS_PATH, load_tenants
from tests.fake_wecom import FakeWeCom

RATE = 5  # SIYU_WECOM_RATE: calls per second to the corp
WINDOW = 4  # the fake counts calls per token in windows of 4 s ...
ALLOWED = RATE * WINDOW + 2  # ... and answers 45009 past 22 of them (the rate, a little slack)
SECONDS = 6


@pytest.fixture
def fake():
    fake = FakeWeCom(load_tenants(DEMO_TENANTS_PATH), DEMO_SECRETS).start()
    fake.state.config.update({"rate_limit": ALLOWED, "rate_window": WINDOW, "rate_penalty": 4})
    yield fake
    fake.stop()


def test_two_workers_share_the_corps_rate_limit(stack, schema, fake):
    migrate_service(stack.dsn, "outreach", schema=schema)
    env = {
        **os.environ, **DEMO_SECRETS,
        "SIYU_DATABASE_URL": stack.dsn, "SIYU_OUTREACH_SCHEMA": schema,
        "SIYU_WECOM_API_BASE": fake.base_url, "SIYU_WECOM_RATE": str(RATE),
        "SIYU_LOG_LEVEL": "WARNING", "SIYU_TENANTS": str(DEMO_TENANTS_PATH),
    }  # fmt: skip
    argv = [sys.executable, "-m", "tests.integration.outreach.rate_worker", str(SECONDS)]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    workers = [subprocess.Popen(argv, env=env, **pipes) for _ in range(2)]
    results = [w.communicate(timeout=60) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], results
    counts = [tuple(map(int, out.split())) for out, _ in results]
    assert all(calls >= SECONDS * RATE / 4 for calls, _ in counts), counts  # both sent
    assert [refused for _, refused in counts] == [0, 0], results

    with fake.state.lock:
        calls = [c for c in fake.state.calls if c.path == "externalcontact/groupchat/list"]
    assert 45009 not in {c.errcode for c in calls}
    times = sorted(c.at for c in calls)
    busiest = max(sum(1 for t in times if start <= t < start + WINDOW) for start in times)
    assert busiest <= RATE * WINDOW + 1  # the rate (and the one burst slot), for both together
    assert len(times) / (times[-1] - times[0]) <= RATE * 1.1


def test_a_take_waits_for_its_slot(stack, schema):
    migrate_service(stack.dsn, "outreach", schema=schema)
    pool = create_pool(stack.dsn, name="rate-test", schema=schema, max_size=2)
    try:
        limiter = SharedRateLimiter(pool, "wecom:test", rate=20)
        started = time.monotonic()
        waits = [limiter.acquire() for _ in range(11)]
        elapsed = time.monotonic() - started
        assert waits[0] == 0.0
        assert all(w > 0 for w in waits[2:])
        assert 0.45 <= elapsed < 1.5  # 10 slots after the first, 1/20 s apart
        other = SharedRateLimiter(pool, "oa:other", rate=20)  # its own bucket: no wait
        assert other.acquire() == 0.0
    finally:
        pool.close()


def test_a_welcome_takes_a_slot_only_if_its_wait_fits(stack, schema):
    """acquire_within (services/outreach/rate_limits.py): campaign sends queued ahead make the
    next slot 2 s away; a welcome allowed 1 s is refused with the bucket untouched, one allowed
    3 s takes it (and waits), and a prepaid call does not take a second slot."""
    from services.outreach.rate_limits import SlotTooLate, prepaid

    migrate_service(stack.dsn, "outreach", schema=schema)
    pool = create_pool(stack.dsn, name="test-within", schema=schema, max_size=2)
    waited: list[float] = []
    try:
        limiter = SharedRateLimiter(pool, "wecom:within", 5, sleep=waited.append)
        for _ in range(11):  # 1 burst slot, then 10 queued: the 11th waits 2 s
            limiter.acquire()

        def tokens() -> float:
            with pool.connection() as conn:
                return conn.execute(
                    "SELECT tokens FROM rate_buckets WHERE bucket = 'wecom:within'"
                ).fetchone()["tokens"]

        before = tokens()
        with pytest.raises(SlotTooLate):
            limiter.acquire_within(1.0)
        assert tokens() == pytest.approx(before, abs=0.5)  # nothing taken (a refill at most)
        waited.clear()
        limiter.acquire_within(3.0)
        assert waited and 1.5 < waited[0] <= 3.0
        after = tokens()
        with prepaid():
            assert limiter.acquire() == 0.0  # the slot the welcome took
        assert tokens() == pytest.approx(after, abs=0.5)
    finally:
        pool.close()
