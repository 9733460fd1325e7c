"""`siyu dev --demo`'s library (sandbox/console_demo.py) through the real admin API over HTTP,
the fake WeCom as the platform: what it adds is stored and audited like staff's work, campaigns
end up launched (one with a holdout), channel codes are made in WeCom with the corp's tags, a
second seeding adds nothing, and a fake that restarted gets the codes' configs back."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from sandbox.console_demo import Api, FakeCorp, corp_tags, library, seed
from services.outreach.tokens import create_token
from shared.config import Settings
from shared.devstack.ports import free_port
from shared.tenants import DEMO_TENANTS_PATH, load_tenants
from siyu.dev import DevOptions, DevStack
from tests.integration.console.campaign_world import fake_platform
from tests.integration.console.conftest import build

TENANTS = load_tenants(DEMO_TENANTS_PATH)
FAKE_CONTACTS = 12  # fake_platform's corp size: its tags come from the same seed and size


@pytest.fixture
def api(stack, schema, monkeypatch):
    fake, env = fake_platform(monkeypatch)
    console, segment_schema = build(stack, schema, seeded=False, env=env)
    console.fake = fake
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
        fake.stop()
        console.pool.close()
        console.drop(stack.dsn, segment_schema)


@pytest.mark.parametrize(("tenant", "mode"), [("acme", "b2b"), ("bloom", "b2c")])
def test_seeding_fills_the_library_once(api, tenant, mode):
    console, for_tenant = api
    demo = library(mode)
    corp = TENANTS.get(tenant).wecom.corp_id
    fake = FakeCorp(console.fake.base_url.split("/wecom/")[0], corp)
    tags = corp_tags(tenant, mode, seed=1, contacts=FAKE_CONTACTS)
    notes: list[str] = []
    made = seed(for_tenant(tenant), mode, tags=tags, fake=fake, say=notes.append)
    assert made == {"content": len(demo.content), "segments": 2, "campaigns": 3,
                    "channel_codes": 2}  # fmt: skip
    assert notes == []
    again = seed(for_tenant(tenant), mode, tags=tags, fake=fake, say=notes.append)
    assert again == {"content": 0, "segments": 0, "campaigns": 0, "channel_codes": 0}

    campaigns = console.sql(
        "SELECT name, status, channel, content, holdout_percent FROM campaigns "
        "WHERE tenant_id = %s ORDER BY name",
        (tenant,),
    )
    assert sorted(c["name"] for c in campaigns) == sorted(c["name"] for c in demo.campaigns)
    assert {c["status"] for c in campaigns} == {"active"}
    series = [c for c in campaigns if c["channel"] == "wecom_group"]
    assert len(series) == 1 and len(series[0]["content"]["series"]) == 3
    (held,) = [c for c in campaigns if c["holdout_percent"]]
    assert (held["channel"], held["holdout_percent"]) == ("wecom_single", 10)
    codes = console.sql(
        "SELECT code_id, config_id, tags, welcome_content, daily_cap FROM channel_codes "
        "WHERE tenant_id = %s AND status = 'active' ORDER BY code_id",
        (tenant,),
    )
    assert [c["code_id"] for c in codes] == sorted(c["code_id"] for c in demo.codes)
    by_name = {v: k for k, v in tags.items()}
    for code, wanted in zip(codes, sorted(demo.codes, key=lambda c: c["code_id"]), strict=True):
        assert [by_name[t] for t in code["tags"]] == wanted["_tags"]
        assert len(code["welcome_content"]) == len(wanted["_welcome"])
        assert code["daily_cap"] == wanted.get("daily_cap")
    assert any(c["daily_cap"] for c in codes)
    actions = console.sql(
        "SELECT action, count(*) AS n FROM audit_log WHERE tenant_id = %s AND actor_name = %s "
        "GROUP BY action",
        (tenant, "demo-test"),
    )
    assert {a["action"]: a["n"] for a in actions} == {
        "content.create": len(demo.content), "segment.create": 2, "campaign.create": 3,
        "campaign.launch": 3, "channel_code.create": 2,
    }  # fmt: skip
    other = "bloom" if tenant == "acme" else "acme"
    assert console.sql("SELECT 1 FROM content WHERE tenant_id = %s", (other,)) == []

    # The fake restarts (its configs are in memory); the database keeps the codes.
    with console.fake.state.lock:
        console.fake.state.channel_codes.pop(corp, None)
    assert seed(for_tenant(tenant), mode, tags=tags, fake=fake, say=notes.append)[
        "channel_codes"] == 0  # fmt: skip
    assert notes == ["2 channel code(s) restored in the fake WeCom"]
    with console.fake.state.lock:
        held_now = set(console.fake.state.channel_codes.get(corp, {}))
    assert held_now == {c["config_id"] for c in codes}


def test_siyu_dev_seeds_with_a_token_it_revokes(api, stack, schema, tmp_path: Path):
    console, _ = api
    out = io.StringIO()
    settings = Settings.from_env({"SIYU_DATABASE_URL": stack.dsn, "SIYU_OUTREACH_SCHEMA": schema})
    dev = DevStack(settings, DevOptions(home=tmp_path), out=out)
    acme = load_tenants(DEMO_TENANTS_PATH).get("acme")
    dev._seed_library(settings, acme, console.url)
    assert (
        "demo library of acme: 9 content items, 2 segments, 3 campaigns, 2 channel codes added"
    ) in out.getvalue()
    tokens = console.sql("SELECT revoked_at FROM api_tokens WHERE name = 'siyu dev --demo'")
    assert len(tokens) == 1 and tokens[0]["revoked_at"] is not None

    dev._seed_library(settings, acme, "http://127.0.0.1:9/api/v1")  # nothing listens there
    assert "demo library of acme not seeded" in out.getvalue()
    assert all(t["revoked_at"] for t in console.sql("SELECT revoked_at FROM api_tokens"))
