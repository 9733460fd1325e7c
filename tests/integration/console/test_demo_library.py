"""`siyu dev --demo`'s library (sandbox/console_demo.py) through the real admin API over HTTP:
what it adds is stored and audited like staff's work, campaigns end up launched, and a second
seeding adds nothing."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from sandbox.console_demo import Api, library, seed
from services.outreach.tokens import create_token
from shared.config import Settings
from shared.devstack.ports import free_port
from shared.tenants import DEMO_TENANTS_PATH, load_tenants
from siyu.dev import DevOptions, DevStack
from tests.integration.console.conftest import build


@pytest.fixture
def api(stack, schema):
    console, segment_schema = build(stack, schema, seeded=False)
    port = free_port()
    server = make_server("127.0.0.1", port, console.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def for_tenant(tenant: str) -> Api:
        with console.pool.connection() as conn:
            _, token = create_token(conn, tenant_id=tenant, role="admin", name="demo-test")
        return Api(f"http://127.0.0.1:{port}/api/v1", token)

    console.url = f"http://127.0.0.1:{port}/api/v1"
    try:
        yield console, for_tenant
    finally:
        server.shutdown()
        thread.join(timeout=10)
        console.pool.close()
        console.drop(stack.dsn, segment_schema)


@pytest.mark.parametrize(("tenant", "mode"), [("acme", "b2b"), ("bloom", "b2c")])
def test_seeding_fills_the_library_once(api, tenant, mode):
    console, for_tenant = api
    demo = library(mode)
    made = seed(for_tenant(tenant), mode)
    assert made == {"content": len(demo.content), "segments": 2, "campaigns": 2}
    assert seed(for_tenant(tenant), mode) == {"content": 0, "segments": 0, "campaigns": 0}

    campaigns = console.sql(
        "SELECT name, status, channel, content FROM campaigns WHERE tenant_id = %s ORDER BY name",
        (tenant,),
    )
    assert sorted(c["name"] for c in campaigns) == sorted(c["name"] for c in demo.campaigns)
    assert {c["status"] for c in campaigns} == {"active"}
    series = [c for c in campaigns if c["channel"] == "wecom_group"]
    assert len(series) == 1 and len(series[0]["content"]["series"]) == 3
    actions = console.sql(
        "SELECT action, count(*) AS n FROM audit_log WHERE tenant_id = %s AND actor_name = %s "
        "GROUP BY action",
        (tenant, "demo-test"),
    )
    assert {a["action"]: a["n"] for a in actions} == {
        "content.create": len(demo.content), "segment.create": 2, "campaign.create": 2,
        "campaign.launch": 2,
    }  # fmt: skip
    other = "bloom" if tenant == "acme" else "acme"
    assert console.sql("SELECT 1 FROM content WHERE tenant_id = %s", (other,)) == []


def test_siyu_dev_seeds_with_a_token_it_revokes(api, stack, schema, tmp_path: Path):
    console, _ = api
    out = io.StringIO()
    settings = Settings.from_env({"SIYU_DATABASE_URL": stack.dsn, "SIYU_OUTREACH_SCHEMA": schema})
    dev = DevStack(settings, DevOptions(home=tmp_path), out=out)
    acme = load_tenants(DEMO_TENANTS_PATH).get("acme")
    dev._seed_library(settings, acme, console.url)
    assert "demo library of acme: 8 content items, 2 segments, 2 campaigns added" in out.getvalue()
    tokens = console.sql("SELECT revoked_at FROM api_tokens WHERE name = 'siyu dev --demo'")
    assert len(tokens) == 1 and tokens[0]["revoked_at"] is not None

    dev._seed_library(settings, acme, "http://127.0.0.1:9/api/v1")  # nothing listens there
    assert "demo library of acme not seeded" in out.getvalue()
    assert all(t["revoked_at"] for t in console.sql("SELECT revoked_at FROM api_tokens"))
