"""Per-tenant rate limits of the business events API and tracked links (docs/security.md "Rate
limits"): acme is given tiny limits in its tenants file, bloom keeps the deployment defaults.
Acme bursting past its limit gets 429 + Retry-After while every bloom request succeeds, even
with acme's bucket row locked (bloom never waits on acme)."""

from __future__ import annotations

import json
import re

import psycopg
import pytest
from prometheus_client import REGISTRY
from psycopg import sql

from services.ingest.app import create_app
from services.ingest.tokens import create_token
from services.ingest.wiring import build_deps
from shared.db import create_pool
from shared.kafka.topics import ensure_topics
from shared.migrations import migrate_service
from shared.tenants import DEMO_TENANTS_PATH, parse_tenants

# Refill of 0.01/s: nothing comes back during a test, so every count below is exact.
ACME_LIMITS = (
    "    limits: {events_per_s: 0.01, events_burst: 500, links_per_s: 0.01, links_burst: 3}\n"
)


def limited_tenants():
    text = DEMO_TENANTS_PATH.read_text(encoding="utf-8")
    text = text.replace("  - id: acme\n", "  - id: acme\n" + ACME_LIMITS, 1)
    return parse_tenants(text, source="limited.yaml")


@pytest.fixture
def limited(stack, kafka, schema, monkeypatch):
    for key in ("ACME_OA_SECRET", "ACME_WECOM_SECRET", "BLOOM_OA_SECRET", "BLOOM_WECOM_SECRET"):
        monkeypatch.setenv(key, "x")
    migrate_service(stack.dsn, "ingest", schema=schema)
    ensure_topics(kafka)
    pool = create_pool(stack.dsn, name="ingest-test", schema=schema, max_size=4, timeout=3)
    deps = build_deps(limited_tenants(), pool, kafka, "test-link-secret-0123456789")
    tokens = {t: create_token(stack.dsn, t, "test", schema=schema) for t in ("acme", "bloom")}
    yield create_app(deps).test_client(), deps, tokens
    deps.publisher.close()
    pool.close()


def limited_count(tenant: str, surface: str) -> float:
    labels = {"tenant": tenant, "surface": surface}
    return REGISTRY.get_sample_value("siyu_rate_limited_total", labels) or 0.0


def batch(tenant: str, prefix: str, n: int) -> dict:
    return {
        "events": [
            {
                "idempotency_key": f"{tenant}-{prefix}-{i}",
                "type": "biz.trial.started",
                "occurred_at": "2026-11-24T09:30:00+08:00",
                "identity": {"crm_id": f"C-{i}"},
            }
            for i in range(n)
        ]
    }


def post(client, token: str, body: dict):
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    return client.post("/api/v1/events", data=json.dumps(body), headers=headers)


def assert_limited(response, limit: str, described: str) -> int:
    assert response.status_code == 429, response.get_json()
    assert re.fullmatch(r"[1-9][0-9]*", response.headers["Retry-After"])
    error = response.get_json()["error"]
    assert error["code"] == "rate_limited"
    assert f"{limit} limit of {described}" in error["message"]
    assert error["details"]["retry_after_s"] == int(response.headers["Retry-After"])
    return int(response.headers["Retry-After"])


def lock_bucket(stack, schema: str, bucket: str) -> psycopg.Connection:
    """Another transaction holding the bucket's row lock, as a take in flight would."""
    conn = psycopg.connect(stack.dsn)
    conn.execute(
        sql.SQL("SELECT 1 FROM {}.rate_buckets WHERE bucket = %s FOR UPDATE").format(
            sql.Identifier(schema)
        ),
        (bucket,),
    )
    return conn


def test_events_are_counted_per_event_and_only_acme_is_limited(limited):
    client, _deps, tokens = limited
    before_acme, before_bloom = limited_count("acme", "events"), limited_count("bloom", "events")
    acme = [post(client, tokens["acme"], batch("acme", f"b{i}", 200)) for i in range(3)]
    bloom = [post(client, tokens["bloom"], batch("bloom", f"b{i}", 200)) for i in range(5)]
    assert [r.status_code for r in acme] == [200, 200, 429]  # 400 of 500 taken; 200 do not fit
    wait = assert_limited(acme[2], "events", "0.01 events/s, bursts of 500")
    assert wait >= 100 * 100  # 100 missing events at 0.01/s
    assert [r.status_code for r in bloom] == [200] * 5  # 1000 events: the defaults are generous
    # The refused batch cost nothing: the 100 events left are still there, then none.
    assert post(client, tokens["acme"], batch("acme", "rest", 100)).status_code == 200
    assert_limited(post(client, tokens["acme"], batch("acme", "one", 1)), "events", "0.01")
    assert limited_count("acme", "events") == before_acme + 2
    assert limited_count("bloom", "events") == before_bloom


def test_a_limited_tenant_is_refused_without_the_database_and_bloom_never_waits(
    stack, schema, limited
):
    client, _deps, tokens = limited
    assert post(client, tokens["acme"], batch("acme", "all", 500)).status_code == 200
    assert post(client, tokens["bloom"], batch("bloom", "first", 1)).status_code == 200
    holder = lock_bucket(stack, schema, "events:acme")
    try:
        # Acme's row is locked: a take touching it would wait until the lock goes. Its refusals
        # are answered from what this process last saw, and bloom's takes touch only bloom's row.
        for i in range(3):
            assert_limited(post(client, tokens["acme"], batch("acme", f"x{i}", 1)), "events", "")
            assert post(client, tokens["bloom"], batch("bloom", f"y{i}", 50)).status_code == 200
    finally:
        holder.close()


def test_bad_json_and_invalid_batches_count_too(limited):
    client, _deps, tokens = limited
    invalid = batch("acme", "bad", 500)
    invalid["events"][0]["type"] = "biz.nope"
    assert post(client, tokens["acme"], invalid).status_code == 400
    assert_limited(post(client, tokens["acme"], batch("acme", "ok", 1)), "events", "")


def click(client, deps, tenant: str):
    token = deps.links.sign(
        tenant_id=tenant, url=f"https://{tenant}.cn/p", identity_kind="openid", identity_value="o1"
    )
    return client.get(f"/r/{token}")


def test_tracked_links_over_acme_limit_are_429_while_bloom_clicks_go_through(
    stack, schema, limited
):
    client, deps, _tokens = limited
    before_acme, before_bloom = limited_count("acme", "links"), limited_count("bloom", "links")
    acme = [click(client, deps, "acme").status_code for _ in range(3)]
    bloom = [click(client, deps, "bloom").status_code for _ in range(10)]
    assert acme == [302] * 3
    assert bloom == [302] * 10
    assert_limited(click(client, deps, "acme"), "links", "0.01 clicks/s, bursts of 3")
    holder = lock_bucket(stack, schema, "links:acme")
    try:
        assert_limited(click(client, deps, "acme"), "links", "")
        assert click(client, deps, "bloom").status_code == 302
    finally:
        holder.close()
    assert limited_count("acme", "links") == before_acme + 2
    assert limited_count("bloom", "links") == before_bloom


def test_every_worker_and_replica_shares_the_tenant_bucket(stack, kafka, schema, limited):
    """A second app on its own pool and limiter, as another gunicorn worker or pod would be:
    acme's 3 clicks are 3 in all, not 3 per process."""
    client, deps, _tokens = limited
    pool = create_pool(stack.dsn, name="ingest-test-2", schema=schema, max_size=2, timeout=3)
    try:
        other = create_app(
            build_deps(limited_tenants(), pool, kafka, "test-link-secret-0123456789")
        )
        second = other.test_client()
        assert [click(client, deps, "acme").status_code for _ in range(2)] == [302, 302]
        assert click(second, deps, "acme").status_code == 302
        assert_limited(click(second, deps, "acme"), "links", "0.01 clicks/s, bursts of 3")
        assert_limited(click(client, deps, "acme"), "links", "0.01 clicks/s, bursts of 3")
        assert click(second, deps, "bloom").status_code == 302
    finally:
        other.extensions["siyu.ingest"].publisher.close()
        pool.close()
