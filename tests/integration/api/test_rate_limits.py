"""Per-tenant rate limit of the admin API (docs/security.md "Rate limits"): acme's tenants file
gives it 3 requests and no refill to speak of; bloom keeps the deployment defaults. A platform
token acting on ?tenant=acme counts against acme."""

from __future__ import annotations

import re

import psycopg
import pytest
from prometheus_client import REGISTRY
from psycopg import sql

from shared.config import Settings
from shared.db import create_pool
from shared.migrations import migrate_service
from shared.tenants import DEMO_TENANTS_PATH
from siyu.api import create_app
from tests.integration.api.conftest import Api, issue_tokens

ACME_LIMITS = "    limits: {api_per_s: 0.01, api_burst: 3}\n"


@pytest.fixture
def api(stack, schema, tmp_path):
    tenants = tmp_path / "tenants.yaml"
    text = DEMO_TENANTS_PATH.read_text(encoding="utf-8")
    tenants.write_text(text.replace("  - id: acme\n", "  - id: acme\n" + ACME_LIMITS, 1))
    migrate_service(stack.dsn, "outreach", schema=schema)
    pool = create_pool(stack.dsn, name="api-test", schema=schema, max_size=4, timeout=3)
    settings = Settings.from_env({"SIYU_DATABASE_URL": stack.dsn, "SIYU_TENANTS": str(tenants)})
    app = create_app(
        settings,
        pool=pool,
        schema_for=lambda service: schema if service == "outreach" else service,
        token_cache_ttl_s=0,
    )
    built = Api(app.test_client(), app, pool, schema)
    issue_tokens(built)
    yield built
    pool.close()


def limited_count(tenant: str) -> float:
    labels = {"tenant": tenant, "surface": "api"}
    return REGISTRY.get_sample_value("siyu_rate_limited_total", labels) or 0.0


def assert_limited(response) -> None:
    assert response.status_code == 429, response.get_json()
    assert re.fullmatch(r"[1-9][0-9]*", response.headers["Retry-After"])
    error = response.get_json()["error"]
    assert error["code"] == "rate_limited"
    assert "api limit of 0.01 requests/s, bursts of 3" in error["message"]


def test_acme_over_its_limit_gets_429_while_bloom_is_served(api, stack, schema):
    before_acme, before_bloom = limited_count("acme"), limited_count("bloom")
    acme = [api.call("GET", "/tokens", "admin").status_code for _ in range(3)]
    bloom = [api.call("GET", "/tokens", "bloom").status_code for _ in range(20)]
    assert acme == [200] * 3
    assert bloom == [200] * 20
    assert_limited(api.call("GET", "/tokens", "admin"))
    assert_limited(api.call("GET", "/me", "viewer"))  # every token of the tenant, every route
    # Acme's bucket row locked by another transaction (a take in flight): acme's refusals never
    # touch it, and bloom's requests touch only bloom's row.
    holder = psycopg.connect(stack.dsn)
    try:
        holder.execute(
            sql.SQL("SELECT 1 FROM {}.rate_buckets WHERE bucket = 'api:acme' FOR UPDATE").format(
                sql.Identifier(schema)
            )
        )
        assert_limited(api.call("GET", "/me", "operator"))
        assert api.call("GET", "/tokens", "bloom").status_code == 200
    finally:
        holder.close()
    assert limited_count("acme") == before_acme + 3
    assert limited_count("bloom") == before_bloom


def test_a_platform_token_acting_on_acme_counts_against_acme(api):
    for _ in range(3):
        assert api.call("GET", "/tokens?tenant=acme", "platform").status_code == 200
    assert_limited(api.call("GET", "/tokens?tenant=acme", "platform"))
    assert_limited(api.call("GET", "/tokens", "admin"))
    assert api.call("GET", "/tokens?tenant=bloom", "platform").status_code == 200
    assert api.call("GET", "/tenants", "platform").status_code == 200  # no tenant: its own bucket


def test_unauthenticated_requests_are_not_counted_against_the_tenant(api):
    for _ in range(5):
        assert api.call("GET", "/tokens", "siyu_adm_not-a-token").status_code == 401
    assert api.call("GET", "/tokens", "admin").status_code == 200


def test_the_openapi_document_lists_429_on_every_protected_operation(api):
    spec = api.client.get("/api/v1/openapi.json").get_json()
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if isinstance(op, dict) and "security" in op:
                assert "429" in op["responses"], (method, path)
